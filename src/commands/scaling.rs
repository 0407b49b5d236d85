//! `layerpar scaling`: a performance model of layer-parallel training, calibrated on this
//! run, that predicts the time per objective evaluation (forward solve, adjoint solve,
//! gradient) for P = 1, 2, 4, … ranks.
//!
//! Measured here: the time of one forward and one adjoint layer step at the configured width
//! and batch, the time of one neighbour message of a state (ping-pong between ranks 0 and 1;
//! a nominal 2 µs + bytes / 4 GB/s on one rank), and from a few evaluations the step calls
//! of every rank on every MGRIT level. The model:
//!
//!   T(P) = Σ_{l < L−1} (c^f_l t_f + c^a_l t_a) · pts_l(P)        (relaxation, restriction)
//!        + (k^f t_f + k^a t_a) · N_{L−1}                        (sequential coarsest solve)
//!        + (N/P) t_a                                           (gradient pass, MGRIT only)
//!        + m(P) t_msg                                          (messages on the critical path)
//!
//! where pts_l(P) is the largest number of level-l points a rank owns (block distribution),
//! c_l = measured steps per owned point per evaluation, k = measured coarsest sweeps per
//! evaluation, and m(P) counts the neighbour messages of each phase plus the coarsest
//! pipeline's P hops. With one level (the serial sweep) T(P) = N (t_f + t_a) + 2P t_msg.

use super::agree;
use crate::train::DistNet;
use crate::parallel::Parallel;
use anyhow::Result;
use mgrit::{Comm, Distribution, MpiComm};
use odenet::{Scratch, Step};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct ScalingArgs {
    pub config: Option<PathBuf>,
    pub set: Vec<String>,
    pub evaluations: usize,
    pub max_ranks: usize,
    /// Write the calibrated model here.
    pub save: Option<PathBuf>,
    /// Use this saved model instead of calibrating (validation at another rank count).
    pub model: Option<PathBuf>,
    /// Draw the predicted speedup (and the measured point) as an SVG file here.
    pub plot: Option<PathBuf>,
}

/// The calibrated model (what `--save` writes and `--model` reads).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Model {
    pub layers: usize,
    pub t_forward: f64,
    pub t_adjoint: f64,
    pub t_message: f64,
    /// Measured / raw model time at the calibration rank count (copies, sums, norms and
    /// other work the step counts do not see).
    pub overhead: f64,
    pub calibrated_ranks: usize,
    pub c_forward: Vec<f64>,
    pub c_adjoint: Vec<f64>,
    pub k_forward: f64,
    pub k_adjoint: f64,
    pub cycles: f64,
    pub nrelax: f64,
}

/// Seconds per call of `f`, the best of 5 timed loops.
fn time_of(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Largest number of points of a level (stride m, `points` points) owned by one of P ranks.
fn max_points(steps: usize, p: usize, stride: usize, points: usize) -> usize {
    let d = Distribution::new(steps, p, false);
    (0..p)
        .map(|q| d.level_range(q, stride, points).len())
        .max()
        .unwrap_or(0)
}

pub fn run(par: &Parallel, args: &ScalingArgs) -> Result<()> {
    let comm = MpiComm::new(par.world());
    let setup = (|| -> Result<_> {
        for out in args.save.iter().chain(&args.plot) {
            super::data::require_output_dir(out)?;
        }
        let config = crate::config::load(args.config.as_deref(), &args.set)?;
        let (train, _) = crate::data::load(&config)?;
        let net = crate::model::build_network(&config, train.dim, train.classes)?;
        Ok((config, train, net))
    })();
    let (config, train, net) = agree(par, setup)?;
    let basis = config.spline_basis()?;
    let mut dist = agree(
        par,
        DistNet::new(
            net.clone(),
            &comm,
            crate::model::solver_settings(&config),
            basis,
        )
        .map_err(anyhow::Error::from),
    )?;
    let pnet = crate::model::parameter_network(&config, &net);
    let global = crate::model::initial_parameters(&config, &net);
    let theta = dist.layout.extract(&pnet, &dist.part, &global);
    let mut grad = vec![0.0; theta.len()];
    let sh = *net.shape();
    let (n, w, batch) = (sh.layers, sh.width, train.len());
    let p = par.size();

    // Measured evaluations (after one warm-up), the slowest rank's time.
    dist.objective_gradient(&theta, &train.features, &train.labels, &mut grad);
    dist.fwd_steps.clear();
    dist.adj_steps.clear();
    let evals = args.evaluations.max(1);
    let t = Instant::now();
    for _ in 0..evals {
        dist.objective_gradient(&theta, &train.features, &train.labels, &mut grad);
    }
    let mine = t.elapsed().as_secs_f64() / evals as f64;
    let measured = comm.all_gather(&[mine]).into_iter().fold(0.0, f64::max);

    // Step and message costs on this machine.
    let mut g = layerpar_data::rng::generator(7, 3);
    let mut rnd = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| 0.1 * (layerpar_data::rng::uniform(&mut g) - 0.5))
            .collect()
    };
    let (k, b, u, mut lam) = (rnd(w * w), rnd(w), rnd(w * batch), rnd(w * batch));
    let theta_n: Vec<f64> = k.into_iter().chain(b).collect();
    let step = net.step(&theta_n, 0.1);
    let mut scratch = Scratch::new(w * batch);
    let mut out = vec![0.0; w * batch];
    let reps = (2e7 / (2.0 * (w * w * batch) as f64)).clamp(3.0, 200.0) as usize;
    let t_f = time_of(|| step.forward(&u, &mut out, &mut scratch), reps);
    let t_a = time_of(|| step.adjoint(&u, &mut lam, &mut scratch, None), reps);
    let bytes = (w * batch * 8) as f64;
    let t_msg = if p >= 2 {
        let msg = vec![0.0; w * batch];
        let rounds = 20;
        let t = Instant::now();
        for _ in 0..rounds {
            match par.rank() {
                0 => {
                    comm.send(1, 9001, msg.clone());
                    comm.wait_sends();
                    comm.recv(1, 9002);
                }
                1 => {
                    comm.recv(0, 9001);
                    comm.send(0, 9002, msg.clone());
                    comm.wait_sends();
                }
                _ => {}
            }
        }
        let rtt = t.elapsed().as_secs_f64() / rounds as f64;
        comm.all_gather(&[if par.is_root() { rtt / 2.0 } else { 0.0 }])[0]
    } else {
        2e-6 + bytes / 4e9
    };

    // Calibration: steps per owned point per evaluation on each level (slowest rank), and
    // coarsest sweeps per evaluation (all ranks' coarsest steps / coarsest steps).
    let grid = dist.grid().clone();
    let nl = grid.num_levels();
    let gathered = |v: &[u64]| -> Vec<f64> {
        let mut local: Vec<f64> = v.iter().map(|&x| x as f64 / evals as f64).collect();
        local.resize(nl, 0.0);
        comm.all_gather(&local)
    };
    let (fs, as_) = (gathered(&dist.fwd_steps), gathered(&dist.adj_steps));
    let per_level = |all: &[f64], l: usize| -> (f64, f64) {
        let v: Vec<f64> = all.iter().skip(l).step_by(nl).copied().collect();
        (v.iter().cloned().fold(0.0, f64::max), v.iter().sum())
    };
    let coarse = grid.levels[nl - 1].clone();
    // Calibration: steps per owned point per evaluation on each level (busiest rank), and
    // coarsest sweeps per evaluation (all ranks' coarsest steps / coarsest steps).
    let mut cal = Model {
        layers: n,
        t_forward: t_f,
        t_adjoint: t_a,
        t_message: t_msg,
        overhead: 1.0,
        calibrated_ranks: p,
        c_forward: vec![0.0; nl],
        c_adjoint: vec![0.0; nl],
        k_forward: per_level(&fs, nl - 1).1 / coarse.steps as f64,
        k_adjoint: per_level(&as_, nl - 1).1 / coarse.steps as f64,
        cycles: (config.mgrit.max_iter + config.mgrit.adjoint_max_iter) as f64,
        nrelax: config.mgrit.nrelax as f64,
    };
    for l in 0..nl.saturating_sub(1) {
        let lv = &grid.levels[l];
        let pts = max_points(n, p, lv.stride, lv.points()).max(1) as f64;
        cal.c_forward[l] = per_level(&fs, l).0 / pts;
        cal.c_adjoint[l] = per_level(&as_, l).0 / pts;
    }
    let raw = |m: &Model, q: usize| -> f64 {
        let (t_f, t_a, t_msg) = (m.t_forward, m.t_adjoint, m.t_message);
        if nl == 1 {
            return n as f64 * (t_f + t_a) + 2.0 * q as f64 * t_msg * f64::from(u8::from(q > 1));
        }
        let mut t = 0.0;
        for l in 0..nl - 1 {
            let lv = &grid.levels[l];
            t += (m.c_forward[l] * t_f + m.c_adjoint[l] * t_a)
                * max_points(n, q, lv.stride, lv.points()) as f64;
        }
        t += (m.k_forward * t_f + m.k_adjoint * t_a) * coarse.steps as f64;
        t += (n as f64 / q as f64).ceil() * t_a;
        if q > 1 {
            // Per cycle and level: F, (C, F)·nrelax, two restriction exchanges, the final F.
            let per_level_msgs = 4.0 + 2.0 * m.nrelax;
            let coarse_hops = (m.k_forward + m.k_adjoint) * q as f64;
            t += (m.cycles * per_level_msgs * (nl - 1) as f64 + coarse_hops + 3.0) * t_msg;
        }
        t
    };
    cal.overhead = measured / raw(&cal, p);
    let model_used = match &args.model {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read model {}: {e}", path.display()))?;
            let m: Model = toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "model file {} is malformed: {}",
                    path.display(),
                    e.message()
                )
            })?;
            if m.layers != n || m.c_forward.len() != nl {
                anyhow::bail!("model file {} was calibrated for {} layers and {} levels, this run has {n} and {nl}", path.display(), m.layers, m.c_forward.len());
            }
            m
        }
        None => cal.clone(),
    };
    let model = |q: usize| model_used.overhead * raw(&model_used, q);
    let serial = model_used.overhead * n as f64 * (model_used.t_forward + model_used.t_adjoint);
    if let (Some(path), true) = (&args.save, par.is_root()) {
        checkpoint::replace_file(path, toml::to_string(&cal)?.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let (c_f, c_a) = (&model_used.c_forward, &model_used.c_adjoint);

    if par.is_root() {
        println!("layerpar scaling: {n} layers, width {w}, batch {batch}; MGRIT {nl} level(s), points per level {:?}", grid.levels.iter().map(|l| l.points()).collect::<Vec<_>>());
        println!(
            "measured on this machine: forward step {:.3e} s, adjoint step {:.3e} s, message of {:.0} KiB {:.3e} s{}",
            t_f,
            t_a,
            bytes / 1024.0,
            t_msg,
            if p >= 2 { " (ping-pong)" } else { " (nominal: run on ≥ 2 ranks to measure)" }
        );
        println!(
            "model calibrated on {} rank{} (overhead factor {:.2}){}",
            model_used.calibrated_ranks,
            if model_used.calibrated_ranks == 1 {
                ""
            } else {
                "s"
            },
            model_used.overhead,
            args.model
                .as_ref()
                .map(|m| format!(", read from {}", m.display()))
                .unwrap_or_default()
        );
        println!("step calls per evaluation on the busiest rank at {p} ranks (measured → model):");
        for l in 0..nl {
            let lv = &grid.levels[l];
            let pts = max_points(n, p, lv.stride, lv.points()) as f64;
            let (mf, ma) = (per_level(&fs, l).0, per_level(&as_, l).0);
            let (pf, pa) = if l + 1 < nl {
                (c_f[l] * pts, c_a[l] * pts)
            } else {
                // The coarsest level: this rank's share of k sequential sweeps (its points
                // but point 0, which is never stepped to).
                let d = Distribution::new(n, p, false);
                let share = (0..p)
                    .map(|q| {
                        let r = d.level_range(q, coarse.stride, coarse.points());
                        r.len() - usize::from(r.start == 0 && !r.is_empty())
                    })
                    .max()
                    .unwrap_or(0) as f64;
                (model_used.k_forward * share, model_used.k_adjoint * share)
            };
            println!("  level {l}: forward {mf:.0} → {pf:.0}, adjoint {ma:.0} → {pa:.0}");
        }
        let predicted = model(p);
        let _ = serial;
        println!(
            "time per evaluation on {p} rank{}: measured {measured:.4} s, model {predicted:.4} s ({:+.1} %)",
            if p == 1 { "" } else { "s" },
            100.0 * (predicted - measured) / measured
        );
        println!("serial reference (one rank, one level): {serial:.4} s per evaluation");
        println!(
            "{:>6} {:>14} {:>9} {:>11}",
            "ranks", "s/evaluation", "speedup", "efficiency"
        );
        let mut q = 1;
        let mut curve = Vec::new();
        while q <= args.max_ranks.min(n) {
            let t = model(q);
            println!(
                "{q:>6} {t:>14.5} {:>9.2} {:>10.1}%",
                serial / t,
                100.0 * serial / t / q as f64
            );
            curve.push((q as f64, serial / t));
            q *= 2;
        }
        if let Some(path) = &args.plot {
            let title = format!(
                "{n} layers, width {w}, {nl} MGRIT level(s), calibrated on {} rank(s)",
                model_used.calibrated_ranks
            );
            plot_speedup(path, &title, &curve, (p as f64, serial / measured))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// Draws the model's speedup over the serial sweep against the rank count (both axes
/// logarithmic), the ideal speedup P, and the measured point, as SVG. The file is written
/// whole under a temporary name and renamed, so a failed run leaves no partial plot.
fn plot_speedup(
    path: &Path,
    title: &str,
    curve: &[(f64, f64)],
    measured: (f64, f64),
) -> Result<()> {
    let mut svg = String::new();
    render_speedup(&mut svg, title, curve, measured)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    checkpoint::replace_file(path, svg.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn render_speedup(
    svg: &mut String,
    title: &str,
    curve: &[(f64, f64)],
    measured: (f64, f64),
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let x_max = curve.last().map_or(2.0, |c| c.0).max(2.0);
    let y_values = curve.iter().map(|c| c.1).chain([measured.1, x_max]);
    let y_max = y_values.clone().fold(1.0_f64, f64::max) * 1.5;
    let y_min = y_values.fold(1.0_f64, f64::min).max(1e-4) / 1.5;
    let root = SVGBackend::with_string(svg, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .x_desc("MPI ranks P")
        .y_desc("speedup over the serial sweep")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, 1.0), (x_max, x_max)],
            BLACK.mix(0.4),
        ))?
        .label("ideal (P)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), BLUE.stroke_width(2)))?
        .label("model")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(curve.iter().map(|&c| Circle::new(c, 3, BLUE.filled())))?;
    chart
        .draw_series([Circle::new(measured, 6, RED.filled())])?
        .label("measured")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
