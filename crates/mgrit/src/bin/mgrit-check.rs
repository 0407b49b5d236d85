//! `mgrit-check MODE`: runs the solver's model-problem checks under MPI and prints one line
//! per case (`ok …` or `FAIL …`) and a closing `N passed, M failed` line on rank 0.
//!
//! Modes: `sweep` (converged MGRIT against the serial sweep over ranks, cf, levels, N, V/F
//! cycles, F/FCF), `bitwise` (one level is the serial sweep bit for bit), `exact` (two-level
//! F-relaxation is exact after ⌈N/cf⌉ iterations), `bound` (two-level convergence factors
//! against the Dobrev et al. bound), `reverse` (reverse-time solves), `harness` (the
//! application checks on every rank, rank 0 printing each rank's counts), `bench` (time per V-cycle, linear system, N = 4096).

use mgrit::harness::{check_app, check_state, Counts, Outcome, Report};
use mgrit::problems::{two_level_bounds, Fault, Faulty, ModelProblem};
use mgrit::{Comm, MpiComm, Options, Solver, StepInfo};
use std::time::Instant;

/// FNV-1a's offset basis: the fingerprint of no solution at all.
const FNV_OFFSET: u64 = mgrit::Fnv1a::OFFSET;

struct Tally {
    passed: usize,
    failed: usize,
    root: bool,
    /// FNV-1a over the bits of every solution computed: equal for every rank count, since
    /// MGRIT does the same arithmetic at each point wherever it lives.
    fingerprint: mgrit::Fnv1a,
}

impl Tally {
    fn mix(&mut self, sol: &[Vec<f64>]) {
        for x in sol {
            self.fingerprint.write_f64s(x);
        }
    }
}

impl Tally {
    fn record(&mut self, ok: bool, line: String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        if self.root && (!ok || std::env::var_os("MGRIT_CHECK_VERBOSE").is_some()) {
            println!("{} {line}", if ok { "ok" } else { "FAIL" });
        }
    }
}

/// The whole fine solution u_0 … u_N (time order) on every rank.
fn gather(solver: &Solver<Vec<f64>, MpiComm>, dim: usize) -> Vec<Vec<f64>> {
    let mut local = Vec::new();
    for n in solver.time_range() {
        local.extend_from_slice(solver.state(n).expect("owned"));
    }
    solver
        .comm()
        .all_gather(&local)
        .chunks(dim)
        .map(|c| c.to_vec())
        .collect()
}

fn max_rel_error(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let scale = b
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max)
        / scale
}

fn problem(name: &str) -> ModelProblem {
    match name {
        "scalar" => ModelProblem::scalar(-1.0),
        "stiff" => ModelProblem::scalar(-20.0),
        "growth" => ModelProblem::scalar(4.0),
        "linear" => ModelProblem::linear(3),
        _ => ModelProblem::cubic(),
    }
}

const T: f64 = 0.5;

fn solve(
    name: &str,
    steps: usize,
    opts: Options,
    comm: &MpiComm,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, mgrit::Stats) {
    let mut app = problem(name);
    let dim = app.u0.len();
    let reverse = opts.reverse;
    if reverse {
        app.start_index = steps;
    }
    let mut solver = Solver::new(steps, 0.0, T, opts, comm.duplicate()).expect("valid options");
    let stats = solver.solve(&mut app);
    let got = gather(&solver, dim);
    let mut reference = problem(name).serial(steps, T / steps as f64);
    if reverse {
        reference.reverse();
    }
    (got, reference, stats)
}

fn sweep(comm: &MpiComm, t: &mut Tally) {
    for name in ["linear", "scalar", "cubic"] {
        for steps in [64, 100, 257] {
            for cf in [2, 3, 4] {
                for levels in 2..=5 {
                    for fmg in [false, true] {
                        for nrelax in [0, 1] {
                            // The scalar and cubic problems on a subset, the linear one on all.
                            if name != "linear" && (fmg || steps == 100) {
                                continue;
                            }
                            let opts = Options {
                                max_levels: levels,
                                cfactor: vec![cf],
                                nrelax: vec![nrelax],
                                fmg,
                                max_iter: 300,
                                abs_tol: 1e-14,
                                ..Options::default()
                            };
                            let (got, reference, stats) = solve(name, steps, opts, comm);
                            t.mix(&got);
                            let err = max_rel_error(&got, &reference);
                            t.record(
                                err <= 1e-12,
                                format!(
                                    "sweep {name} N={steps} cf={cf} levels={levels}/{} {} {}: {} iterations, rel error {err:.2e}",
                                    stats.points_per_level.len(),
                                    if fmg { "F-cycle" } else { "V-cycle" },
                                    if nrelax == 0 { "F" } else { "FCF" },
                                    stats.iterations
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn bitwise(comm: &MpiComm, t: &mut Tally) {
    for name in ["scalar", "linear", "cubic"] {
        for steps in [1, 7, 64, 257] {
            for reverse in [false, true] {
                let opts = Options {
                    max_levels: 1,
                    reverse,
                    ..Options::default()
                };
                let (got, reference, _) = solve(name, steps, opts, comm);
                t.record(
                    got == reference,
                    format!("bitwise {name} N={steps} reverse={reverse}"),
                );
            }
        }
    }
}

fn exact(comm: &MpiComm, t: &mut Tally) {
    for name in ["growth", "stiff", "linear", "cubic"] {
        for steps in [64usize, 100, 257] {
            for cf in [2, 3, 4] {
                // ⌈N/cf⌉ iterations; the last C-point is ⌊N/cf⌋, after which F-points follow.
                let iters = steps.div_ceil(cf);
                let run = |k: usize| {
                    let opts = Options {
                        max_levels: 2,
                        cfactor: vec![cf],
                        nrelax: vec![0],
                        skip: false,
                        max_iter: k,
                        abs_tol: 0.0,
                        compute_residual: false,
                        ..Options::default()
                    };
                    let (got, reference, _) = solve(name, steps, opts, comm);
                    max_rel_error(&got, &reference)
                };
                let err = run(iters);
                let early = run(3);
                t.record(
                    err <= 1e-13,
                    format!("exact {name} N={steps} cf={cf}: error {err:.2e} after {iters} iterations ({early:.2e} after 3)"),
                );
            }
        }
    }
}

fn bound(comm: &MpiComm, t: &mut Tally) {
    let lambda = -20.0;
    for steps in [64, 257] {
        for cf in [2, 4, 8] {
            for nrelax in [0, 1] {
                let opts = Options {
                    max_levels: 2,
                    cfactor: vec![cf],
                    nrelax: vec![nrelax],
                    skip: false,
                    max_iter: 12,
                    abs_tol: 0.0,
                    ..Options::default()
                };
                let (_, _, stats) = solve("stiff", steps, opts, comm);
                let h = T / steps as f64;
                let (bf, bfcf) = two_level_bounds(
                    1.0 + h * lambda,
                    1.0 + cf as f64 * h * lambda,
                    cf,
                    steps / cf,
                );
                let b = if nrelax == 0 { bf } else { bfcf };
                // Factors between residuals above the round-off floor.
                let factors: Vec<f64> = stats
                    .residuals
                    .windows(2)
                    .filter(|w| w[1] > 1e-11)
                    .map(|w| w[1] / w[0])
                    .collect();
                let worst = factors.iter().cloned().fold(0.0, f64::max);
                t.record(
                    !factors.is_empty() && worst <= b * (1.0 + 1e-9) + 1e-12,
                    format!(
                        "bound λ={lambda} N={steps} cf={cf} {}: measured max factor {worst:.4e} over {} iterations, bound {b:.4e}",
                        if nrelax == 0 { "F" } else { "FCF" },
                        factors.len()
                    ),
                );
            }
        }
    }
}

fn reverse(comm: &MpiComm, t: &mut Tally) {
    for name in ["linear", "cubic"] {
        for steps in [64, 257] {
            for levels in [2, 4] {
                let opts = Options {
                    max_levels: levels,
                    cfactor: vec![3],
                    reverse: true,
                    max_iter: 300,
                    abs_tol: 1e-14,
                    ..Options::default()
                };
                let (got, reference, stats) = solve(name, steps, opts, comm);
                t.mix(&got);
                let err = max_rel_error(&got, &reference);
                t.record(err <= 1e-12, format!("reverse {name} N={steps} levels={levels}: {} iterations, rel error {err:.2e}", stats.iterations));
            }
        }
    }
    // Every time point stays on its forward rank.
    let steps = 100;
    let f =
        Solver::<Vec<f64>, _>::new(steps, 0.0, T, Options::default(), comm.duplicate()).unwrap();
    let r = Solver::<Vec<f64>, _>::new(
        steps,
        0.0,
        T,
        Options {
            reverse: true,
            ..Options::default()
        },
        comm.duplicate(),
    )
    .unwrap();
    t.record(
        f.time_range() == r.time_range(),
        format!("reverse ownership on rank {}", comm.rank()),
    );
}

/// What a harness case reports on a rank: the worst outcome of its checks.
fn verdict(c: Counts) -> Outcome {
    if c.failed > 0 {
        Outcome::Fail
    } else if c.inconclusive > 0 {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    }
}

/// Records whether this rank's report has the `expected` verdict, prints the report of a
/// rank where it has not, and has rank 0 print every rank's counts.
fn harness_case(comm: &MpiComm, t: &mut Tally, case: &str, rep: &Report, expected: Outcome) {
    let got = verdict(rep.counts());
    if got != expected {
        eprint!("harness {case}: expected {expected}, got {got}:\n{rep}");
    }
    t.record(
        got == expected,
        format!(
            "harness {case} on rank {}: expected {expected}, got {got}",
            comm.rank()
        ),
    );
    let by_rank = rep.counts_by_rank(comm);
    if t.root {
        for (r, c) in by_rank.iter().enumerate() {
            println!("harness {case} rank {r}: {c}, {}", verdict(*c));
        }
    }
}

/// The application checks on every rank, each rank with a step of its own (level 1, from
/// point 2r to 2r + 2): the model problems pass on their initial condition and on a
/// rank-dependent state, are inconclusive on the zero initial guess, and two faulty
/// problems fail where their fault shows.
fn harness(comm: &MpiComm, t: &mut Tally) {
    let (rank, size) = (comm.rank(), comm.size());
    let info = StepInfo {
        level: 1,
        from: 2 * rank,
        to: 2 * rank + 2,
        t_from: 0.1 * rank as f64,
        t_to: 0.1 * (rank + 1) as f64,
        fine_steps: 2,
        dt: 0.1,
    };
    for name in ["scalar", "linear", "cubic"] {
        let mut app = problem(name);
        let rep = check_app(&mut app, comm, 0, &info, 1e-14);
        harness_case(comm, t, &format!("{name} init(0)"), &rep, Outcome::Pass);
        let x: Vec<f64> = app.u0.iter().map(|v| v * (1.0 + rank as f64)).collect();
        let rep = check_state(&mut app, comm, &x, &info, 1e-14);
        harness_case(comm, t, &format!("{name} own state"), &rep, Outcome::Pass);
        let rep = check_app(&mut app, comm, 5, &info, 1e-14);
        harness_case(
            comm,
            t,
            &format!("{name} zero guess"),
            &rep,
            Outcome::Inconclusive,
        );
    }
    let mut lossy = Faulty::new(problem("linear"), Fault::LossyPack);
    let rep = check_app(&mut lossy, comm, 0, &info, 1e-14);
    harness_case(comm, t, "lossy pack", &rep, Outcome::Fail);
    // The last rank's step differs: its own check fails (recomputed on rank 0), and so does
    // that of the rank before it (recomputed on the last rank). One rank cannot tell.
    let mut skewed = Faulty::new(problem("linear"), Fault::StepOnRank(size - 1));
    skewed.rank = rank;
    let rep = check_app(&mut skewed, comm, 0, &info, 1e-14);
    let shows = size >= 2 && rank + 2 >= size;
    let expected = if shows { Outcome::Fail } else { Outcome::Pass };
    harness_case(comm, t, "rank-dependent step", &rep, expected);
}

fn bench(comm: &MpiComm, t: &mut Tally) {
    let steps = 4096;
    let dim = 16;
    for (levels, cycles) in [(3, 20), (30, 20)] {
        let opts = Options {
            max_levels: levels,
            cfactor: vec![4],
            nrelax: vec![1],
            skip: false,
            max_iter: cycles,
            abs_tol: 0.0,
            compute_residual: false,
            ..Options::default()
        };
        let mut app = ModelProblem::linear(dim);
        let mut solver = Solver::new(steps, 0.0, 1.0, opts, comm.duplicate()).unwrap();
        solver.solve(&mut app); // warm up
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            let stats = solver.solve(&mut app);
            let secs = start.elapsed().as_secs_f64();
            let mut max = [0.0];
            comm_max(comm, secs, &mut max);
            best = best.min(max[0] / stats.iterations as f64);
        }
        if comm.rank() == 0 {
            println!(
                "bench linear n={dim} N={steps} cf=4 levels={} ranks={}: {:.3} ms per V-cycle (FCF)",
                solver.grid().num_levels(),
                comm.size(),
                best * 1e3
            );
        }
    }
    t.record(true, "bench".into());
}

fn comm_max(comm: &MpiComm, v: f64, out: &mut [f64; 1]) {
    out[0] = comm.all_gather(&[v]).into_iter().fold(0.0, f64::max);
}

fn main() {
    let universe = mpi::initialize().expect("MPI initializes");
    let world = universe.world();
    let comm = MpiComm::new(&world);
    let mode = std::env::args().nth(1).unwrap_or_else(|| "sweep".into());
    let mut t = Tally {
        passed: 0,
        failed: 0,
        root: comm.rank() == 0,
        fingerprint: mgrit::Fnv1a::new(),
    };
    if t.root {
        println!("mgrit-check {mode} on {} ranks", comm.size());
    }
    match mode.as_str() {
        "sweep" => sweep(&comm, &mut t),
        "bitwise" => bitwise(&comm, &mut t),
        "exact" => exact(&comm, &mut t),
        "bound" => bound(&comm, &mut t),
        "reverse" => reverse(&comm, &mut t),
        "harness" => harness(&comm, &mut t),
        "bench" => bench(&comm, &mut t),
        other => {
            eprintln!("error: unknown mode `{other}`");
            std::process::exit(2);
        }
    }
    // Failures anywhere count: every rank's tally is summed.
    let failed: f64 = comm.all_gather(&[t.failed as f64]).iter().sum();
    // Modes that check solutions mix them in; the benchmark computes none to print.
    if t.root {
        if t.fingerprint.finish() != FNV_OFFSET {
            println!("solution fingerprint {:#018x}", t.fingerprint.finish());
        }
        println!(
            "mgrit-check {mode}: {} passed, {} failed",
            t.passed, failed as usize
        );
    }
    drop(comm);
    drop(universe);
    if failed > 0.0 {
        std::process::exit(1);
    }
}
