//! `layerpar-check [--levels L] [--cf C] [--tol T] [--fd] [--width W] [--layers N]
//! [--activation A] [--sine] [--time-scale]`: the layer-parallel objective and gradient
//! against the serial ones, under MPI. `--sine`: sine regression (1 input, copy opening,
//! average closing, MSE against real targets) instead of Peaks classification;
//! `--time-scale`: a learnable time scale (s = 1.3) as the last parameter; `--conv` (or
//! `--conv-gap`): a convolutional network (2-channel 6 × 5 images, 3 channels, 3 × 3 kernels,
//! flatten or global-average read-out, 5 classes) on random images instead of Peaks;
//! `--chain` (or `--chain-gap`): a network of three ODE blocks (2-channel 8 × 6 images, 3
//! channels over 7 layers; 2×2 average pooling to 4 × 3 and 4 channels over 5 layers; 2×2 max
//! pooling to 2 × 1 and 2 channels over 6 layers; 5 classes) against odenet's serial chain.
//!
//! Prints (rank 0) the relative differences to the serial J and ∇J, the bits of J and a
//! fingerprint of the whole gradient (for bit-for-bit comparisons across rank counts), and,
//! with `--fd`, central finite differences of the parallel objective against the parallel
//! gradient. Ends with `check: N passed, M failed`; exits 1 on a failure.

use layer_parallel::SolverSettings;
use layerpar::parallel::fingerprint;
use layerpar::train::{BlockNet, DistNet};
use layerpar_data::rng::{generator, uniform, Generator};
use layerpar_data::{generate_peaks, generate_sine};
use mgrit::{Comm, MpiComm, Options};
use odenet::{
    Activation, Closing, ConvShape, Loss, Network, Opening, Readout, Regularization, Shape,
    Workspace,
};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The network every check uses: Peaks-shaped (2 inputs, 5 classes), T = 2, cross-entropy,
/// activated opening, Tikhonov and classifier weight 1e-3 and the given ddt weight.
fn check_network(shape: Shape, act: Activation, ddt: f64) -> Network {
    let reg = Regularization {
        tikhonov: 1e-3,
        ddt,
        classifier: 1e-3,
    };
    Network::new(shape, act, 2.0, Loss::CrossEntropy, reg)
}

fn peaks_shape(width: usize, layers: usize) -> Shape {
    Shape::dense(2, width, 5, layers)
}

/// With `--conv` or `--conv-gap`: the convolutional check network's shape (2-channel 6 × 5
/// images, 3 channels, 3 × 3 kernels, 5 classes) and `n` random images with labels j mod 5.
fn conv_problem(
    args: &[String],
    layers: usize,
    n: usize,
) -> Option<(Shape, layerpar_data::Dataset)> {
    let readout = if args.iter().any(|a| a == "--conv-gap") {
        Readout::GlobalAverage
    } else if args.iter().any(|a| a == "--conv") {
        Readout::Flatten
    } else {
        return None;
    };
    let conv = ConvShape {
        in_channels: 2,
        channels: 3,
        height: 6,
        width: 5,
        kernel_h: 3,
        kernel_w: 3,
        readout,
        transition: None,
    };
    let shape = Shape::convolutional(conv, 5, layers);
    let mut g = generator(29 + n as u64, 1);
    let features = (0..n * shape.input)
        .map(|_| 2.0 * uniform(&mut g) - 1.0)
        .collect();
    let mut data =
        layerpar_data::Dataset::labelled(features, (0..n).map(|j| j % 5).collect(), shape.input, 5);
    data.image = Some(layerpar_data::ImageShape {
        channels: 2,
        height: 6,
        width: 5,
    });
    Some((shape, data))
}

/// n parameters uniform in [−0.8, 0.8].
fn random_parameters(g: &mut Generator, n: usize) -> Vec<f64> {
    (0..n).map(|_| 0.8 * (2.0 * uniform(g) - 1.0)).collect()
}

/// The same MGRIT options forward and adjoint: one level is a single sweep, more levels
/// iterate to the absolute tolerance `tol`.
fn settings(levels: usize, cf: usize, tol: f64) -> SolverSettings {
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
}

/// ‖a − b‖ / ‖b‖.
fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    norm(&mut a.iter().zip(b).map(|(x, y)| x - y)) / norm(&mut b.iter().copied())
}

/// The worst relative error, over `coords`, of central differences (step 1e-6) of
/// `objective` at `x` against `grad` (errors relative to max(|∂J|, 1e-8)).
fn worst_fd_error(
    coords: &[usize],
    x: &[f64],
    grad: &[f64],
    mut objective: impl FnMut(&[f64]) -> f64,
) -> f64 {
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for &i in coords {
        let mut j = [0.0; 2];
        for (s, sign) in [(0, 1.0), (1, -1.0)] {
            let mut t = x.to_vec();
            t[i] += sign * eps;
            j[s] = objective(&t);
        }
        let fdv = (j[0] - j[1]) / (2.0 * eps);
        worst = worst.max((fdv - grad[i]).abs() / grad[i].abs().max(1e-8));
    }
    worst
}

/// Counts checks, prints each as `ok …` or `FAIL …` on rank 0, and ends with the failures
/// summed over all ranks.
struct Tally {
    passed: usize,
    failed: usize,
    root: bool,
}

impl Tally {
    fn check(&mut self, ok: bool, line: String) {
        if ok {
            self.passed += 1
        } else {
            self.failed += 1
        }
        if self.root {
            println!("{} {line}", if ok { "ok" } else { "FAIL" });
        }
    }

    /// Prints `check: N passed, M failed` (rank 0); true when any rank failed a check.
    fn finish(&self, comm: &MpiComm) -> bool {
        let failed_all: f64 = comm.all_gather(&[self.failed as f64]).iter().sum();
        if self.root {
            println!(
                "check: {} passed, {} failed",
                self.passed, failed_all as usize
            );
        }
        failed_all > 0.0
    }
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
        let time_scale = args.iter().any(|a| a == "--time-scale");
        let conv = conv_problem(&args, layers, 37);
        let code = spline_check(
            &comm, levels, cf, tol, width, layers, m, degree, &act, fd, time_scale, conv,
        );
        drop(comm);
        drop(universe);
        std::process::exit(code);
    }

    if let Some(readout) = chain_readout(&args) {
        let act = act.parse::<Activation>().expect("activation");
        let code = chain_check(&comm, settings(levels, cf, tol), act, readout, fd);
        drop(comm);
        drop(universe);
        std::process::exit(code);
    }
    let sine = args.iter().any(|a| a == "--sine");
    let shape = Shape {
        time_scale: args.iter().any(|a| a == "--time-scale"),
        ..if sine {
            Shape {
                opening: Opening::Replicate,
                closing: Closing::Average,
                ..Shape::dense(1, width, 1, layers)
            }
        } else {
            peaks_shape(width, layers)
        }
    };
    let conv = conv_problem(&args, layers, 37);
    let shape = match conv {
        Some((c, _)) => Shape {
            time_scale: shape.time_scale,
            ..c
        },
        None => shape,
    };
    let mut net = check_network(shape, act.parse::<Activation>().expect("activation"), 1e-4);
    let data = if let Some((_, d)) = conv {
        d
    } else if sine {
        net.loss = Loss::Mse;
        generate_sine(37, 5, 3).0
    } else {
        generate_peaks(37, 5, 3).0
    };
    let mut theta = random_parameters(&mut generator(11, 1), net.num_params());
    theta[net.layout.scale.clone()].fill(1.3);

    // Serial reference on every rank.
    let mut ws = Workspace::default();
    let mut grad_serial = vec![0.0; theta.len()];
    let serial =
        net.objective_gradient(&theta, &data.features, data.y(), &mut ws, &mut grad_serial);

    let mut dist =
        BlockNet::new(net.clone(), &comm, settings(levels, cf, tol), None).expect("setup");
    let local = dist.extract(&theta);
    let mut grad_local = vec![0.0; local.len()];
    let v = dist.objective_gradient(&local, &data.features, data.y(), &mut grad_local);
    let grad = dist.gather(&grad_local);

    let mut tally = Tally {
        passed: 0,
        failed: 0,
        root,
    };
    let grad_err = relative_difference(&grad, &grad_serial);
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
    tally.check(
        j_err <= limit,
        format!("objective vs serial: relative difference {j_err:.3e} (limit {limit:e})"),
    );
    tally.check(
        grad_err <= limit,
        format!("gradient vs serial: relative difference {grad_err:.3e} (limit {limit:e})"),
    );

    // The forward-only evaluation (swept in pieces through the ranks' pipeline on more than
    // one rank) gives the serial sweep's bits: Σ loss / B and the number correct.
    let big = if let Some((_, d)) = conv_problem(&args, layers, 1103) {
        d
    } else if sine {
        generate_sine(1103, 5, 4).0
    } else {
        generate_peaks(1103, 5, 4).0
    };
    let (l, acc) = dist.evaluate(&local, &big.features, big.y());
    let (sum, correct) = net.evaluate(&theta, &big.features, big.y(), &mut ws);
    let b = big.len() as f64;
    tally.check(
        l.to_bits() == (sum / b).to_bits() && acc == correct as f64 / b,
        format!(
            "evaluate on {} examples in {} pieces vs the serial sweep: loss {l:e} vs {:e}, accuracy {acc} vs {}",
            big.len(),
            layer_parallel::objective::sweep_chunks(big.len(), comm.size()),
            sum / b,
            correct as f64 / b
        ),
    );

    if fd {
        // Coordinates spread over every block: opening, several layers, classifier.
        let l = &net.layout;
        let mut coords = Vec::new();
        if !l.opening().is_empty() {
            coords.extend([l.open_weight.start, l.open_bias.start + 1]);
        }
        for n in [0, layers / 2, layers - 1] {
            coords.push(l.layer_weight(n).start + 1);
            coords.push(l.layer_bias(n).start);
        }
        if !l.classifier().is_empty() {
            coords.extend([l.class_weight.start + 2, l.class_bias.end - 1]);
        }
        coords.extend(l.scale.clone());
        let worst = worst_fd_error(&coords, &theta, &grad, |t| {
            let tl = dist.extract(t);
            let mut gl = vec![0.0; tl.len()];
            dist.objective_gradient(&tl, &data.features, data.y(), &mut gl)
                .objective
        });
        tally.check(
            worst < 1e-6,
            format!("finite differences of the parallel J at {} coordinates: worst relative error {worst:.3e}", coords.len()),
        );
    }
    let any_failed = tally.finish(&comm);
    drop(dist);
    drop(comm);
    drop(universe);
    if any_failed {
        std::process::exit(1);
    }
}

/// The read-out of `--chain` (flatten) or `--chain-gap` (global average); None without.
fn chain_readout(args: &[String]) -> Option<Readout> {
    if args.iter().any(|a| a == "--chain-gap") {
        Some(Readout::GlobalAverage)
    } else if args.iter().any(|a| a == "--chain") {
        Some(Readout::Flatten)
    } else {
        None
    }
}

/// The `--chain` check network's blocks: 2-channel 8 × 6 images → 3 channels (7 layers) →
/// average pooling, 4 channels of 4 × 3 (5 layers) → max pooling, 2 channels of 2 × 1
/// (6 layers) → `readout`, 5 classes. Layer counts that split unevenly over 2–4 ranks.
fn chain_blocks(act: Activation, readout: Readout) -> Vec<Network> {
    let mut conv = ConvShape {
        in_channels: 2,
        channels: 3,
        height: 8,
        width: 6,
        kernel_h: 3,
        kernel_w: 3,
        readout,
        transition: None,
    };
    let mut nets = vec![check_network(Shape::convolutional(conv, 0, 7), act, 1e-4)];
    for (pool, channels, layers, classes) in [
        (odenet::Pool::Average, 4, 5, 0),
        (odenet::Pool::Max, 2, 6, 5),
    ] {
        let (height, width) = odenet::conv::pooled_size(conv.height, conv.width);
        conv = ConvShape {
            in_channels: conv.channels,
            channels,
            height,
            width,
            transition: Some(odenet::Transition {
                pool: Some(pool),
                in_height: conv.height,
                in_width: conv.width,
            }),
            ..conv
        };
        let shape = Shape::convolutional(conv, classes, layers);
        nets.push(check_network(shape, act, 1e-4));
    }
    nets
}

/// `--chain`: the layer-parallel chain of three ODE blocks against odenet's serial chain:
/// J and ∇J (bit for bit with one MGRIT level, within 1e-9 converged), the pipelined
/// evaluation against the serial sweep, and with `fd` finite differences of the parallel J in
/// every block. Returns the exit code.
fn chain_check(
    comm: &MpiComm,
    settings: SolverSettings,
    act: Activation,
    readout: Readout,
    fd: bool,
) -> i32 {
    let nets = chain_blocks(act, readout);
    let serial = odenet::Chain::new(nets.clone()).expect("a valid chain");
    let input = nets[0].shape().input;
    let image = |n: usize, seed: u64| {
        let mut g = generator(seed, 1);
        let x: Vec<f64> = (0..n * input)
            .map(|_| 2.0 * uniform(&mut g) - 1.0)
            .collect();
        (x, (0..n).map(|j| j % 5).collect::<Vec<usize>>())
    };
    let (x, y) = image(37, 29);
    let theta = random_parameters(&mut generator(11, 1), serial.num_params());
    let mut ws = odenet::ChainWorkspace::default();
    let mut grad_serial = vec![0.0; theta.len()];
    let want = serial.objective_gradient(&theta, &x, &y, &mut ws, &mut grad_serial);
    let one = settings.forward.max_levels == 1;
    let bases = vec![None; nets.len()];
    let mut dist = DistNet::new(nets, comm, settings, bases).expect("setup");
    let local = dist.extract(&theta);
    let mut grad_local = vec![0.0; local.len()];
    let v = dist.objective_gradient(&local, &x, &y, &mut grad_local);
    let grad = dist.gather(&grad_local);
    let root = comm.rank() == 0;
    let mut tally = Tally {
        passed: 0,
        failed: 0,
        root,
    };
    if root {
        println!(
            "layerpar-check on {} ranks: a chain of {} ODE blocks, levels {}",
            comm.size(),
            dist.blocks.len(),
            dist.levels()
        );
        println!("objective bits {:#018x}", v.objective.to_bits());
        println!("gradient fingerprint {:#018x}", fingerprint(&grad));
    }
    let limit = if one { 0.0 } else { 1e-9 };
    let j_err = (v.objective - want.objective).abs() / want.objective.abs();
    tally.check(
        j_err <= limit,
        format!("chain objective vs serial: relative difference {j_err:.3e} (limit {limit:e})"),
    );
    for i in 0..dist.blocks.len() {
        let r = serial.block_range(i);
        let nonzero = grad_serial[r.clone()].iter().any(|&g| g != 0.0);
        let e = relative_difference(&grad[r.clone()], &grad_serial[r]);
        tally.check(
            nonzero && e <= limit,
            format!(
                "block {} gradient vs serial: relative difference {e:.3e} (limit {limit:e}){}",
                i + 1,
                if nonzero {
                    ""
                } else {
                    "; the serial gradient is zero, inconclusive"
                }
            ),
        );
    }
    let (bx, by) = image(1103, 31);
    let (l, acc) = dist.evaluate(&local, &bx, &by);
    let (sum, correct) = serial.evaluate(&theta, &bx, &by, &mut ws);
    let b = by.len() as f64;
    tally.check(
        l.to_bits() == (sum / b).to_bits() && acc == correct as f64 / b,
        format!(
            "chain evaluate on {} examples vs the serial sweep: loss {l:e} vs {:e}, accuracy {acc} vs {}",
            by.len(),
            sum / b,
            correct as f64 / b
        ),
    );
    if fd {
        // Two coordinates in each block's opening, first and last layer, and the classifier.
        let mut coords = Vec::new();
        for (i, net) in serial.blocks.iter().enumerate() {
            let (l, at) = (&net.layout, serial.block_range(i).start);
            coords.extend([at + l.open_weight.start, at + l.open_bias.start]);
            coords.extend([
                at + l.layer_weight(0).start + 1,
                at + l.layer_bias(l.shape.layers - 1).start,
            ]);
            if !l.classifier().is_empty() {
                coords.extend([at + l.class_weight.start + 2, at + l.class_bias.end - 1]);
            }
        }
        let worst = worst_fd_error(&coords, &theta, &grad, |t| {
            let tl = dist.extract(t);
            let mut gl = vec![0.0; tl.len()];
            dist.objective_gradient(&tl, &x, &y, &mut gl).objective
        });
        tally.check(
            worst < 1e-6,
            format!("finite differences of the parallel chain's J at {} coordinates: worst relative error {worst:.3e}", coords.len()),
        );
    }
    i32::from(tally.finish(comm))
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
    time_scale: bool,
    conv: Option<(Shape, layerpar_data::Dataset)>,
) -> i32 {
    use bspline::{Basis, KnotKind};
    let root = comm.rank() == 0;
    let (base, data) =
        conv.unwrap_or_else(|| (peaks_shape(width, layers), generate_peaks(37, 5, 3).0));
    let shape = Shape { time_scale, ..base };
    let net = check_network(shape, act.parse::<Activation>().expect("activation"), 1e-3);
    let pshape = Shape { layers: m, ..shape };
    let pnet = check_network(pshape, net.activation, 1e-3);
    let mut g = generator(13, 1);
    let mut params = random_parameters(&mut g, pnet.num_params());
    params[pnet.layout.scale.clone()].fill(0.9);
    let basis = Basis::uniform(KnotKind::Clamped, degree, m, 2.0).expect("basis");
    let settings = |levels: usize| settings(levels, cf, tol);
    let eval = |dist: &mut BlockNet, p: &[f64]| {
        let local = dist.extract(p);
        let mut gl = vec![0.0; local.len()];
        let v = dist.objective_gradient(&local, &data.features, &data.labels, &mut gl);
        (v, dist.gather(&gl))
    };
    let mut one =
        BlockNet::new(net.clone(), comm, settings(1), Some(basis.clone())).expect("setup");
    let (v1, g1) = eval(&mut one, &params);
    let mut many =
        BlockNet::new(net.clone(), comm, settings(levels), Some(basis.clone())).expect("setup");
    let (vm, gm) = eval(&mut many, &params);
    let mut tally = Tally {
        passed: 0,
        failed: 0,
        root,
    };
    if root {
        println!(
            "layerpar-check on {} ranks: spline M {m} degree {degree}, levels {}",
            comm.size(),
            many.levels()
        );
        println!("objective bits {:#018x}", v1.objective.to_bits());
        println!("gradient fingerprint {:#018x}", fingerprint(&g1));
    }
    tally.check(
        g1.len() == params.len(),
        format!(
            "gradient has {} entries for {} parameters",
            g1.len(),
            params.len()
        ),
    );
    let rel = relative_difference(&gm, &g1);
    let jrel = (vm.objective - v1.objective).abs() / v1.objective.abs();
    tally.check(
        rel <= 1e-9 && jrel <= 1e-9,
        format!("converged MGRIT vs one level: gradient {rel:.3e}, objective {jrel:.3e}"),
    );
    if fd {
        let l = &pnet.layout;
        let mut coords = vec![l.open_weight.start, l.class_bias.end - 1];
        coords.extend(l.scale.clone());
        for i in [0, m / 2, m - 1] {
            coords.push(l.layer_weight(i).start + 1);
            coords.push(l.layer_bias(i).start);
        }
        let worst = worst_fd_error(&coords, &params, &gm, |t| eval(&mut many, t).0.objective);
        tally.check(worst < 1e-6, format!("finite differences of the spline coefficients' J: worst relative error {worst:.3e}"));
    }
    // Degree 1 with M = N + 1 is the per-layer network (θ_n = c_n); without the time-derivative
    // term (which the spline integrates exactly) J and the gradient agree.
    let lnet = check_network(shape, net.activation, 0.0);
    let hat = Basis::uniform(KnotKind::Clamped, 1, layers + 1, 2.0).expect("basis");
    let hshape = Shape {
        layers: layers + 1,
        ..shape
    };
    let hnet = check_network(hshape, net.activation, 0.0);
    let hp = random_parameters(&mut g, hnet.num_params());
    // The per-layer vector drops the last coefficient set (θ(T) belongs to no layer).
    let mut lp = hp[..hnet.layout.hidden_start + layers * hnet.layout.layer_len].to_vec();
    lp.extend_from_slice(&hp[hnet.layout.classifier()]);
    lp.extend_from_slice(&hp[hnet.layout.scale.clone()]);
    let mut sp = BlockNet::new(lnet.clone(), comm, settings(1), Some(hat)).expect("setup");
    let local = sp.layout.extract(&hnet, &sp.part, &hp);
    let mut gl = vec![0.0; local.len()];
    let vs = sp.objective_gradient(&local, &data.features, &data.labels, &mut gl);
    let gs = sp.gather(&gl);
    let mut pl = BlockNet::new(lnet.clone(), comm, settings(1), None).expect("setup");
    let local = pl.layout.extract(&lnet, &pl.part, &lp);
    let mut gl = vec![0.0; local.len()];
    let vp = pl.objective_gradient(&local, &data.features, &data.labels, &mut gl);
    let gp = pl.gather(&gl);
    // The spline's last coefficient only adds its Tikhonov term: compare the shared entries.
    let k = hnet.layout.hidden_start + layers * hnet.layout.layer_len;
    let tail = &hp[k..hnet.layout.classifier().start];
    let extra = 0.5 * lnet.regularization.tikhonov * tail.iter().map(|x| x * x).sum::<f64>();
    let mut gs_shared = gs[..k].to_vec();
    gs_shared.extend_from_slice(&gs[hnet.layout.classifier()]);
    gs_shared.extend_from_slice(&gs[hnet.layout.scale.clone()]);
    let grel = relative_difference(&gs_shared, &gp);
    let jdiff = (vs.objective - extra - vp.objective).abs() / vp.objective.abs();
    tally.check(grel <= 1e-14 && jdiff <= 1e-14, format!("degree-1 splines with M = N + 1 vs per-layer: gradient {grel:.3e}, objective {jdiff:.3e}"));
    i32::from(tally.finish(comm))
}
