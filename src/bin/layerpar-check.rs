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
