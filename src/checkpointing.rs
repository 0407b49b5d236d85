//! Between the distributed training state and checkpoint files: gathering every rank's part
//! into whole arrays (so a file does not depend on the rank count), extracting a rank's part
//! when a run resumes, and moving parameters to a network of another depth (nested
//! iteration, `--init-from`).

use crate::config::{Config, Interp, OptimizerKind};
use crate::train::DistNet;
use crate::train::history::{columns, Row};
use crate::train::{OptimizerState, Start};
use anyhow::{bail, Result};
use checkpoint::{Checkpoint, History, NetShape, RngState};
use mgrit::Comm;
use odenet::{Network, Opening};

/// The shape record of a network whose parameter vector has `hidden_sets` hidden sets (its
/// layers, or its spline coefficient sets).
pub fn net_shape(net: &Network, hidden_sets: usize) -> NetShape {
    let s = net.layout.shape;
    NetShape {
        input: s.input,
        width: s.width,
        classes: s.classes,
        layers: s.layers,
        opening_params: s.opening == Opening::Activate,
        hidden_sets,
    }
}

/// Parameters of a network of shape `src` carried over to `dst`: the opening and classifier
/// copied, the hidden controls interpolated in time when the depths differ. The other
/// sizes must agree.
///
/// Spline controls (`spline`) keep their coefficients: only N changes, so the coefficient
/// counts must agree.
pub fn transfer(
    params: &[f64],
    src: NetShape,
    dst: &Network,
    dst_sets: usize,
    spline: bool,
    interp: Interp,
) -> Result<Vec<f64>> {
    let d = net_shape(dst, dst_sets);
    let mut diffs = Vec::new();
    if src.input != d.input {
        diffs.push(format!(
            "{} input features (the run has {})",
            src.input, d.input
        ));
    }
    if src.width != d.width {
        diffs.push(format!("width {} (the run has {})", src.width, d.width));
    }
    if src.classes != d.classes {
        diffs.push(format!(
            "{} classes (the run has {})",
            src.classes, d.classes
        ));
    }
    if src.opening_params != d.opening_params {
        diffs.push("a different opening layer".to_string());
    }
    if !spline && src.hidden_sets != src.layers {
        diffs.push("spline controls (the run has per-layer controls)".to_string());
    }
    if spline && interp == Interp::Knots {
        return refine_knots(params, src, dst, dst_sets);
    }
    if spline && src.hidden_sets != dst_sets {
        diffs.push(format!(
            "{} hidden parameter sets (the run has {dst_sets} spline coefficient sets)",
            src.hidden_sets
        ));
    }
    if !diffs.is_empty() {
        bail!(
            "the checkpoint's network does not fit: it has {}",
            diffs.join(", ")
        );
    }
    if spline {
        // Spline coefficients do not depend on N: keep them.
        return Ok(params.to_vec());
    }
    let sl = src.layout();
    let dl = &dst.layout;
    let mut out = vec![0.0; dl.len];
    out[dl.opening()].copy_from_slice(&params[sl.opening()]);
    out[dl.classifier()].copy_from_slice(&params[sl.classifier()]);
    let (nc, nf) = (src.layers, d.layers);
    for i in 0..nf {
        let dst_block = dl.layer(i);
        match interp {
            // (Keep and Knots are spline choices; per-layer controls treat them as Constant.)
            Interp::Constant | Interp::Keep | Interp::Knots => {
                let j = (i * nc / nf).min(nc - 1);
                out[dst_block].copy_from_slice(&params[sl.layer(j)]);
            }
            Interp::Linear => {
                // t_i / h_c = i·N_c/N_f: between coarse layers j and j+1.
                let pos = i as f64 * nc as f64 / nf as f64;
                let j = (pos.floor() as usize).min(nc - 1);
                let w = pos - j as f64;
                if j + 1 < nc && w > 0.0 {
                    let (a, b) = (&params[sl.layer(j)], &params[sl.layer(j + 1)]);
                    for (o, (x, y)) in out[dst_block].iter_mut().zip(a.iter().zip(b)) {
                        *o = (1.0 - w) * x + w * y;
                    }
                } else {
                    out[dst_block].copy_from_slice(&params[sl.layer(j)]);
                }
            }
        }
    }
    Ok(out)
}

/// Spline coefficients refined by midpoint knot insertion on clamped uniform knots:
/// M → 2M − d sets with θ(t) unchanged.
fn refine_knots(params: &[f64], src: NetShape, dst: &Network, dst_sets: usize) -> Result<Vec<f64>> {
    let sl = src.layout();
    let len = sl.layer_len;
    let m = src.hidden_sets;
    // The degree follows from the counts: 2M − d = M' ⇒ d = 2M − M'.
    let Some(degree) = (2 * m).checked_sub(dst_sets).filter(|&d| d >= 1 && d < m) else {
        bail!(
            "knot refinement turns {m} coefficient sets into 2M − d; the run has {dst_sets} (set controls.count accordingly)"
        );
    };
    let mut basis = bspline::Basis::uniform(bspline::KnotKind::Clamped, degree, m, dst.final_time)
        .map_err(anyhow::Error::msg)?;
    let mut coef = params[sl.hidden()].to_vec();
    basis.refine_uniformly(&mut coef, len);
    let dl = layer_parallel::spline_layout(dst, dst_sets);
    let mut out = vec![0.0; dl.len];
    out[dl.opening()].copy_from_slice(&params[sl.opening()]);
    out[dl.hidden()].copy_from_slice(&coef);
    out[dl.classifier()].copy_from_slice(&params[sl.classifier()]);
    Ok(out)
}

/// What a checkpoint stores of a run, this rank's parts: θ_k after iteration k and the
/// optimizer's memory.
pub struct Snapshot<'a> {
    pub iteration: usize,
    pub theta: &'a [f64],
    pub optimizer: &'a OptimizerState,
}

/// The optimizer's memory in the file's form: every vector whole (gathered with `all`), the
/// mini-batch order and generator as the RNG record. The one place that knows the file's
/// layout of [`OptimizerState`]; [`optimizer_from_file`] is its inverse.
fn optimizer_to_file(
    state: &OptimizerState,
    all: impl Fn(&[f64]) -> Vec<f64>,
) -> (checkpoint::OptimizerState, RngState) {
    let mut opt = checkpoint::OptimizerState {
        kind: state.kind.to_string(),
        ..Default::default()
    };
    for (s, y) in &state.lbfgs_pairs {
        opt.lbfgs_s.push(all(s));
        opt.lbfgs_y.push(all(y));
    }
    if let Some((m, v, t)) = &state.adam {
        opt.adam_m = all(m);
        opt.adam_v = all(v);
        opt.adam_t = *t;
    }
    if let Some(v) = &state.sgd_velocity {
        opt.sgd_velocity = all(v);
    }
    let mut rng = RngState::default();
    if let Some((order, g)) = &state.batches {
        let (seed, stream, word_pos) = layerpar_data::rng::state(g);
        rng = RngState {
            seed,
            stream,
            word_pos,
            batch_order: order.iter().map(|&i| i as u64).collect(),
        };
    }
    (opt, rng)
}

/// The memory of a `kind` optimizer from a file's records (this rank's parts taken with
/// `local`): the optimizer's own vectors only if the file is of the same kind; the
/// mini-batch order whenever the file has one.
fn optimizer_from_file(
    o: &checkpoint::OptimizerState,
    r: &RngState,
    kind: OptimizerKind,
    local: impl Fn(&[f64]) -> Vec<f64>,
) -> OptimizerState {
    let mut state = OptimizerState::fresh(kind);
    if o.kind == kind.to_string() {
        state.lbfgs_pairs = o
            .lbfgs_s
            .iter()
            .zip(&o.lbfgs_y)
            .map(|(s, y)| (local(s), local(y)))
            .collect();
        if !o.adam_m.is_empty() {
            state.adam = Some((local(&o.adam_m), local(&o.adam_v), o.adam_t));
        }
        if !o.sgd_velocity.is_empty() {
            state.sgd_velocity = Some(local(&o.sgd_velocity));
        }
    }
    if !r.batch_order.is_empty() {
        let g = layerpar_data::rng::from_state(r.seed, r.stream, r.word_pos);
        state.batches = Some((r.batch_order.iter().map(|&i| i as usize).collect(), g));
    }
    state
}

/// Gathers `snap` into a checkpoint (collective: every rank calls it; the result is
/// complete on every rank). `config` is the level's configuration, `base` the run's (stored
/// in the file: a resumed nested run derives every level from it).
pub fn gather(
    dist: &DistNet,
    config: &Config,
    base: &Config,
    snap: &Snapshot,
    rows: &[Row],
    level: usize,
) -> Checkpoint {
    // Replicated spline coefficients are taken from rank 0 only.
    let all = |v: &[f64]| dist.comm.all_gather(&dist.layout.unique(v));
    let params = all(snap.theta);
    let (optimizer, rng) = optimizer_to_file(snap.optimizer, all);
    let net = &dist.net;
    Checkpoint {
        config: base.to_toml(),
        iteration: snap.iteration as u64,
        level: level as u64,
        shape: net_shape(net, crate::model::hidden_sets(config, net)),
        params,
        optimizer,
        rng,
        history: History {
            columns: columns(),
            rows: rows.iter().map(Row::values).collect(),
        },
    }
}

/// This rank's parameters and where to start to resume from a checkpoint of the same
/// network (every row of the file, of every level).
pub fn resume(ckpt: &Checkpoint, dist: &DistNet, config: &Config) -> Result<(Vec<f64>, Start)> {
    let net = &dist.net;
    if ckpt.shape != net_shape(net, crate::model::hidden_sets(config, net)) {
        bail!(
            "the checkpoint's network ({} layers, width {}) differs from the configured one ({} layers, width {}); use --init-from to start a different network from it",
            ckpt.shape.layers,
            ckpt.shape.width,
            net.layout.shape.layers,
            net.layout.shape.width
        );
    }
    let local = |v: &[f64]| dist.layout.extract(net, &dist.part, v);
    let rows: Vec<Row> = ckpt
        .history
        .rows
        .iter()
        .map(|r| Row::from_values(&ckpt.history.columns, r))
        .collect();
    let start = Start {
        iteration: ckpt.iteration as usize,
        time_offset: rows.last().map(|r| r.time_s).unwrap_or(0.0),
        rows,
        optimizer: optimizer_from_file(&ckpt.optimizer, &ckpt.rng, config.optimizer.kind, local),
    };
    Ok((local(&ckpt.params), start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use odenet::{Activation, Loss, Regularization, Shape};

    fn net(layers: usize) -> Network {
        let shape = Shape {
            input: 2,
            width: 2,
            classes: 3,
            layers,
            opening: Opening::Activate,
        };
        Network::new(
            shape,
            Activation::Tanh,
            1.0,
            Loss::CrossEntropy,
            Regularization::default(),
        )
    }

    #[test]
    fn refining_by_two_copies_or_interpolates_layers() {
        let c = net(3);
        let p: Vec<f64> = (0..c.num_params()).map(|i| i as f64).collect();
        let f = net(6);
        let k = transfer(&p, net_shape(&c, 3), &f, 6, false, Interp::Constant).unwrap();
        for i in 0..6 {
            assert_eq!(&k[f.layout.layer(i)], &p[c.layout.layer(i / 2)]);
        }
        assert_eq!(&k[f.layout.classifier()], &p[c.layout.classifier()]);
        assert_eq!(&k[f.layout.opening()], &p[c.layout.opening()]);
        let l = transfer(&p, net_shape(&c, 3), &f, 6, false, Interp::Linear).unwrap();
        for i in 0..5 {
            let (a, b) = (
                &p[c.layout.layer(i / 2)],
                &p[c.layout.layer((i / 2 + 1).min(2))],
            );
            let w = if i % 2 == 1 { 0.5 } else { 0.0 };
            for (k, v) in f.layout.layer(i).enumerate() {
                assert!((l[v] - ((1.0 - w) * a[k] + w * b[k])).abs() < 1e-12);
            }
        }
        // The same depth copies everything.
        assert_eq!(
            transfer(&p, net_shape(&c, 3), &c, 3, false, Interp::Linear).unwrap(),
            p
        );
    }

    #[test]
    fn other_widths_are_refused_with_the_difference_named() {
        let c = net(3);
        let p = vec![0.0; c.num_params()];
        let shape = Shape {
            input: 2,
            width: 4,
            classes: 3,
            layers: 3,
            opening: Opening::Activate,
        };
        let wide = Network::new(
            shape,
            Activation::Tanh,
            1.0,
            Loss::CrossEntropy,
            Regularization::default(),
        );
        let e = transfer(&p, net_shape(&c, 3), &wide, 3, false, Interp::Constant)
            .unwrap_err()
            .to_string();
        assert!(e.contains("width 2 (the run has 4)"), "{e}");
    }
}
