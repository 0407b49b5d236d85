//! `layerpar-check [--levels L] [--cf C] [--tol T] [--fd] [--width W] [--layers N]
//! [--activation A]`: the layer-parallel objective and gradient against the serial ones,
//! under MPI.
//!
//! Prints (rank 0) the relative differences to the serial J and ∇J, the bits of J and a
//! fingerprint of the whole gradient (for bit-for-bit comparisons across rank counts), and,
//! with `--fd`, central finite differences of the parallel objective against the parallel
//! gradient. Ends with `check: N passed, M failed`; exits 1 on a failure.

use layerpar::distributed::{DistNet, SolverSettings};
use layerpar::parallel::fingerprint;
use layerpar_data::generate_peaks;
use layerpar_data::rng::{generator, uniform};
use mgrit::{Comm, MpiComm, Options};
use odenet::{Activation, Loss, Network, Opening, Regularization, Shape, Workspace};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let universe = mpi::initialize().expect("MPI initializes");
    let world = universe.world();
    let comm = MpiComm::new(&world);
    let args: Vec<String> = std::env::args().collect();
    let levels: usize = arg(&args, "--levels", 1);
    let cf: usize = arg(&args, "--cf", 2);
    let tol: f64 = arg(&args, "--tol", 1e-12);
    let width: usize = arg(&args, "--width", 4);
    let layers: usize = arg(&args, "--layers", 13);
    let act: String = arg(&args, "--activation", "tanh".to_string());
    let fd = args.iter().any(|a| a == "--fd");
    let root = comm.rank() == 0;
    if let Some(m) = args
        .iter()
        .position(|a| a == "--spline")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
    {
        let degree: usize = arg(&args, "--degree", 3);
        let code = spline_check(&comm, levels, cf, tol, width, layers, m, degree, &act, fd);
        drop(comm);
        drop(universe);
        std::process::exit(code);
    }

    let shape = Shape {
        input: 2,
        width,
        classes: 5,
        layers,
        opening: Opening::Activate,
    };
    let reg = Regularization {
        tikhonov: 1e-3,
        ddt: 1e-4,
        classifier: 1e-3,
    };
    let net = Network::new(
        shape,
        act.parse::<Activation>().expect("activation"),
        2.0,
        Loss::CrossEntropy,
        reg,
    );
    let (data, _) = generate_peaks(37, 5, 3);
    let mut g = generator(11, 1);
    let theta: Vec<f64> = (0..net.num_params())
        .map(|_| 0.8 * (2.0 * uniform(&mut g) - 1.0))
        .collect();

    // Serial reference on every rank.
    let mut ws = Workspace::default();
    let mut grad_serial = vec![0.0; theta.len()];
    let serial = net.objective_gradient(
        &theta,
        &data.features,
        &data.labels,
        &mut ws,
        &mut grad_serial,
    );

    let opts = Options {
        max_levels: levels,
        cfactor: vec![cf],
        max_iter: if levels == 1 { 1 } else { 200 },
        abs_tol: tol,
        ..Options::default()
    };
    let settings = SolverSettings {
        forward: opts.clone(),
        adjoint: opts,
    };
    let mut dist = DistNet::new(net.clone(), &comm, settings).expect("setup");
    let local = dist.layout.extract(&net, &dist.part, &theta);
    let mut grad_local = vec![0.0; local.len()];
    let v = dist.objective_gradient(&local, &data.features, &data.labels, &mut grad_local);
    let grad = dist.gather(&grad_local);

    let (mut passed, mut failed) = (0, 0);
    let mut check = |ok: bool, line: String| {
        if ok {
            passed += 1
        } else {
            failed += 1
        }
        if root {
            println!("{} {line}", if ok { "ok" } else { "FAIL" });
        }
    };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff: Vec<f64> = grad.iter().zip(&grad_serial).map(|(a, b)| a - b).collect();
    let grad_err = norm(&diff) / norm(&grad_serial);
    let j_err = (v.objective - serial.objective).abs() / serial.objective.abs();
    let limit = if levels == 1 { 0.0 } else { 1e-9 };
    if root {
        println!(
            "layerpar-check on {} ranks: levels {} cf {cf} tol {tol:e}",
            comm.size(),
            dist.levels()
        );
        println!("objective bits {:#018x}", v.objective.to_bits());
        println!("gradient fingerprint {:#018x}", fingerprint(&grad));
        println!("fwd residual {:?}, adj residual {:?}", v.fwd_res, v.adj_res);
    }
    check(
        j_err <= limit,
        format!("objective vs serial: relative difference {j_err:.3e} (limit {limit:e})"),
    );
    check(
        grad_err <= limit,
        format!("gradient vs serial: relative difference {grad_err:.3e} (limit {limit:e})"),
    );

    if fd {
        // Coordinates spread over every block: opening, several layers, classifier.
        let l = &net.layout;
        let mut coords = vec![l.open_weight.start, l.open_bias.start + 1];
        for n in [0, layers / 2, layers - 1] {
            coords.push(l.layer_weight(n).start + 1);
            coords.push(l.layer_bias(n).start);
        }
        coords.push(l.class_weight.start + 2);
        coords.push(l.class_bias.end - 1);
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for &i in &coords {
            let mut j = [0.0; 2];
            for (s, sign) in [(0, 1.0), (1, -1.0)] {
                let mut t = theta.clone();
                t[i] += sign * eps;
                let tl = dist.layout.extract(&net, &dist.part, &t);
                let mut gl = vec![0.0; tl.len()];
                j[s] = dist
                    .objective_gradient(&tl, &data.features, &data.labels, &mut gl)
                    .objective;
            }
            let fdv = (j[0] - j[1]) / (2.0 * eps);
            let rel = (fdv - grad[i]).abs() / grad[i].abs().max(1e-8);
            worst = worst.max(rel);
        }
        check(
            worst < 1e-6,
            format!("finite differences of the parallel J at {} coordinates: worst relative error {worst:.3e}", coords.len()),
        );
    }
    let failed_all: f64 = comm.all_gather(&[failed as f64]).iter().sum();
    if root {
        println!("check: {passed} passed, {} failed", failed_all as usize);
    }
    drop(dist);
    drop(comm);
    drop(universe);
    if failed_all > 0.0 {
        std::process::exit(1);
    }
}

/// Spline controls: the parallel gradient against finite differences, converged MGRIT against
/// the one-level sweep, and degree-1 splines with M = N + 1 against per-layer controls.
#[allow(clippy::too_many_arguments)]
fn spline_check(
    comm: &MpiComm,
    levels: usize,
    cf: usize,
    tol: f64,
    width: usize,
    layers: usize,
    m: usize,
    degree: usize,
    act: &str,
    fd: bool,
) -> i32 {
    use bspline::{Basis, KnotKind};
    let root = comm.rank() == 0;
    let shape = Shape {
        input: 2,
        width,
        classes: 5,
        layers,
        opening: Opening::Activate,
    };
    let reg = Regularization {
        tikhonov: 1e-3,
        ddt: 1e-3,
        classifier: 1e-3,
    };
    let net = Network::new(
        shape,
        act.parse::<Activation>().expect("activation"),
        2.0,
        Loss::CrossEntropy,
        reg,
    );
    let (data, _) = generate_peaks(37, 5, 3);
    let pshape = Shape { layers: m, ..shape };
    let pnet = Network::new(pshape, net.activation, 2.0, Loss::CrossEntropy, reg);
    let mut g = generator(13, 1);
    let params: Vec<f64> = (0..pnet.num_params())
        .map(|_| 0.8 * (2.0 * uniform(&mut g) - 1.0))
        .collect();
    let basis = Basis::uniform(KnotKind::Clamped, degree, m, 2.0).expect("basis");
    let settings = |levels: usize| {
        let o = Options {
            max_levels: levels,
            cfactor: vec![cf],
            max_iter: if levels == 1 { 1 } else { 200 },
            abs_tol: tol,
            ..Options::default()
        };
        SolverSettings {
            forward: o.clone(),
            adjoint: o,
        }
    };
    let eval = |dist: &mut DistNet, p: &[f64]| {
        let local = dist.layout.extract(&pnet, &dist.part, p);
        let mut gl = vec![0.0; local.len()];
        let v = dist.objective_gradient(&local, &data.features, &data.labels, &mut gl);
        (v, dist.gather(&gl))
    };
    let mut one =
        DistNet::with_controls(net.clone(), comm, settings(1), Some(basis.clone())).expect("setup");
    let (v1, g1) = eval(&mut one, &params);
    let mut many = DistNet::with_controls(net.clone(), comm, settings(levels), Some(basis.clone()))
        .expect("setup");
    let (vm, gm) = eval(&mut many, &params);
    let (mut passed, mut failed) = (0, 0);
    let mut check = |ok: bool, line: String| {
        if ok {
            passed += 1
        } else {
            failed += 1
        }
        if root {
            println!("{} {line}", if ok { "ok" } else { "FAIL" });
        }
    };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if root {
        println!(
            "layerpar-check on {} ranks: spline M {m} degree {degree}, levels {}",
            comm.size(),
            many.levels()
        );
        println!("objective bits {:#018x}", v1.objective.to_bits());
        println!("gradient fingerprint {:#018x}", fingerprint(&g1));
    }
    check(
        g1.len() == params.len(),
        format!(
            "gradient has {} entries for {} parameters",
            g1.len(),
            params.len()
        ),
    );
    let d: Vec<f64> = gm.iter().zip(&g1).map(|(a, b)| a - b).collect();
    let rel = norm(&d) / norm(&g1);
    let jrel = (vm.objective - v1.objective).abs() / v1.objective.abs();
    check(
        rel <= 1e-9 && jrel <= 1e-9,
        format!("converged MGRIT vs one level: gradient {rel:.3e}, objective {jrel:.3e}"),
    );
    if fd {
        let l = &pnet.layout;
        let mut coords = vec![l.open_weight.start, l.class_bias.end - 1];
        for i in [0, m / 2, m - 1] {
            coords.push(l.layer_weight(i).start + 1);
            coords.push(l.layer_bias(i).start);
        }
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for &i in &coords {
            let mut j = [0.0; 2];
            for (s, sign) in [(0, 1.0), (1, -1.0)] {
                let mut t = params.clone();
                t[i] += sign * eps;
                j[s] = eval(&mut many, &t).0.objective;
            }
            let fdv = (j[0] - j[1]) / (2.0 * eps);
            worst = worst.max((fdv - gm[i]).abs() / gm[i].abs().max(1e-8));
        }
        check(worst < 1e-6, format!("finite differences of the spline coefficients' J: worst relative error {worst:.3e}"));
    }
    // Degree 1 with M = N + 1 is the per-layer network (θ_n = c_n); without the time-derivative
    // term (which the spline integrates exactly) J and the gradient agree.
    let reg0 = Regularization { ddt: 0.0, ..reg };
    let lnet = Network::new(shape, net.activation, 2.0, Loss::CrossEntropy, reg0);
    let hat = Basis::uniform(KnotKind::Clamped, 1, layers + 1, 2.0).expect("basis");
    let hshape = Shape {
        layers: layers + 1,
        ..shape
    };
    let hnet = Network::new(hshape, net.activation, 2.0, Loss::CrossEntropy, reg0);
    let hp: Vec<f64> = (0..hnet.num_params())
        .map(|_| 0.8 * (2.0 * uniform(&mut g) - 1.0))
        .collect();
    // The per-layer vector drops the last coefficient set (θ(T) belongs to no layer).
    let mut lp = hp[..hnet.layout.hidden_start + layers * hnet.layout.layer_len].to_vec();
    lp.extend_from_slice(&hp[hnet.layout.classifier()]);
    let mut sp = DistNet::with_controls(lnet.clone(), comm, settings(1), Some(hat)).expect("setup");
    let local = sp.layout.extract(&hnet, &sp.part, &hp);
    let mut gl = vec![0.0; local.len()];
    let vs = sp.objective_gradient(&local, &data.features, &data.labels, &mut gl);
    let gs = sp.gather(&gl);
    let mut pl = DistNet::new(lnet.clone(), comm, settings(1)).expect("setup");
    let local = pl.layout.extract(&lnet, &pl.part, &lp);
    let mut gl = vec![0.0; local.len()];
    let vp = pl.objective_gradient(&local, &data.features, &data.labels, &mut gl);
    let gp = pl.gather(&gl);
    // The spline's last coefficient only adds its Tikhonov term: compare the shared entries.
    let k = hnet.layout.hidden_start + layers * hnet.layout.layer_len;
    let tail = &hp[k..hnet.layout.classifier().start];
    let extra = 0.5 * reg0.tikhonov * tail.iter().map(|x| x * x).sum::<f64>();
    let mut gs_shared = gs[..k].to_vec();
    gs_shared.extend_from_slice(&gs[hnet.layout.classifier()]);
    let d: Vec<f64> = gs_shared.iter().zip(&gp).map(|(a, b)| a - b).collect();
    let grel = norm(&d) / norm(&gp);
    let jdiff = (vs.objective - extra - vp.objective).abs() / vp.objective.abs();
    check(grel <= 1e-14 && jdiff <= 1e-14, format!("degree-1 splines with M = N + 1 vs per-layer: gradient {grel:.3e}, objective {jdiff:.3e}"));
    let failed_all: f64 = comm.all_gather(&[failed as f64]).iter().sum();
    if root {
        println!("check: {passed} passed, {} failed", failed_all as usize);
    }
    i32::from(failed_all > 0.0)
}
