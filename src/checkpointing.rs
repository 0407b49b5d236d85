//! Between the distributed training state and checkpoint files: gathering every rank's part
//! into whole arrays (so a file does not depend on the rank count), extracting a rank's part
//! when a run resumes, and moving parameters to a network of another depth (nested
//! iteration, `--init-from`).

use crate::config::{Choice, Config, Interp, OptimizerKind};
use crate::train::history::{columns, Row};
use crate::train::DistNet;
use crate::train::{OptimizerState, Start};
use anyhow::{bail, Result};
use checkpoint::{Checkpoint, History, NetShape, RngState};
use odenet::{Closing, Network, Opening, Regularization, Shape};
use std::collections::BTreeMap;
use std::path::Path;

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
        classifier_params: s.closing == Closing::Affine,
        time_scale: s.time_scale,
        conv: s.conv,
    }
}

/// What differs between a checkpoint's network `src` and the run's `d` in the sizes that
/// every way of carrying parameters over needs equal: input features, width, classes, the
/// opening and closing layers and the time scale (each as "… (the run has …)").
fn size_differences(src: &NetShape, d: &NetShape) -> Vec<String> {
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
        let kind = |p: bool| if p { "\"activate\"" } else { "\"replicate\"" };
        diffs.push(format!(
            "opening {} (the run has {})",
            kind(src.opening_params),
            kind(d.opening_params)
        ));
    }
    if src.classifier_params != d.classifier_params {
        let kind = |p: bool| if p { "\"affine\"" } else { "\"average\"" };
        diffs.push(format!(
            "closing {} (the run has {})",
            kind(src.classifier_params),
            kind(d.classifier_params)
        ));
    }
    if src.conv != d.conv {
        let kind = |c: Option<odenet::ConvShape>| match c {
            None => "a dense network".to_string(),
            Some(c) if c.transition.is_some() => format!("a convolutional block of {c}"),
            Some(c) => format!(
                "a convolutional network of {} channels, {}×{} images, {}×{} kernels, {} read-out",
                c.channels, c.height, c.width, c.kernel_h, c.kernel_w, c.readout
            ),
        };
        diffs.push(format!("{} (the run has {})", kind(src.conv), kind(d.conv)));
    }
    if src.time_scale != d.time_scale {
        let kind = |p: bool| if p { "a learnable" } else { "a fixed" };
        diffs.push(format!(
            "{} time scale (the run has {})",
            kind(src.time_scale),
            kind(d.time_scale)
        ));
    }
    diffs
}

/// Every difference between a checkpoint's network `src` and the run's `d`, as
/// `size_differences` names them, and the depth and the number of hidden parameter sets.
pub fn shape_differences(src: &NetShape, d: &NetShape) -> Vec<String> {
    let mut diffs = size_differences(src, d);
    if src.layers != d.layers {
        diffs.push(format!(
            "{} hidden layers (the run has {})",
            src.layers, d.layers
        ));
    }
    if src.hidden_sets != d.hidden_sets {
        diffs.push(format!(
            "{} hidden parameter sets (the run has {})",
            src.hidden_sets, d.hidden_sets
        ));
    }
    diffs
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
    let mut diffs = size_differences(&src, &d);
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
    out[dl.scale.clone()].copy_from_slice(&params[sl.scale.clone()]);
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

/// The parameters of a network of ODE blocks of shapes `src` (one after another in
/// `params`, each as long as its shape's layout) carried over to the blocks `dst` block by
/// block with [`transfer`], concatenated; `dst_sets` gives a block's hidden sets. For one
/// block this is [`transfer`] itself. The block counts must agree.
pub fn transfer_blocks(
    params: &[f64],
    src: &[NetShape],
    dst: &[&Network],
    dst_sets: impl Fn(&Network) -> usize,
    spline: bool,
    interp: Interp,
) -> Result<Vec<f64>> {
    if src.len() != dst.len() {
        bail!(
            "the checkpoint's network has {} ODE block{}, the run's {} (network.blocks)",
            src.len(),
            if src.len() == 1 { "" } else { "s" },
            dst.len()
        );
    }
    if let ([s], [d]) = (src, dst) {
        return transfer(params, *s, d, dst_sets(d), spline, interp);
    }
    let total: usize = src.iter().map(|s| s.layout().len).sum();
    if total != params.len() {
        bail!(
            "{} parameters do not fit the {} ODE blocks' shapes ({total} parameters)",
            params.len(),
            src.len()
        );
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (i, (s, d)) in src.iter().zip(dst).enumerate() {
        let len = s.layout().len;
        let moved = transfer(
            &params[start..start + len],
            *s,
            d,
            dst_sets(d),
            spline,
            interp,
        )
        .map_err(|e| anyhow::anyhow!("ODE block {}: {e}", i + 1))?;
        out.extend(moved);
        start += len;
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
    out[dl.scale.clone()].copy_from_slice(&params[sl.scale.clone()]);
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
    let all = |v: &[f64]| dist.gather(v);
    let params = all(snap.theta);
    let (optimizer, rng) = optimizer_to_file(snap.optimizer, all);
    let mut shapes = chain_shapes(dist, config);
    Checkpoint {
        config: base.to_toml(),
        iteration: snap.iteration as u64,
        level: level as u64,
        shape: shapes.remove(0),
        blocks: shapes,
        params,
        optimizer,
        rng,
        history: History {
            columns: columns(),
            rows: rows.iter().map(Row::values).collect(),
        },
    }
}

/// The shape records of the network's ODE blocks in order (one for a one-block network).
fn chain_shapes(dist: &DistNet, config: &Config) -> Vec<NetShape> {
    dist.nets()
        .into_iter()
        .map(|n| net_shape(n, crate::model::hidden_sets(config, n)))
        .collect()
}

/// This rank's parameters and where to start to resume from a checkpoint of the same
/// network (every row of the file, of every level).
pub fn resume(ckpt: &Checkpoint, dist: &DistNet, config: &Config) -> Result<(Vec<f64>, Start)> {
    let want = chain_shapes(dist, config);
    let have: Vec<&NetShape> = ckpt.shapes().collect();
    if have.len() != want.len() {
        bail!(
            "the checkpoint's network has {} ODE block{}, the configured one {} (network.blocks): a run resumes its own network",
            have.len(),
            if have.len() == 1 { "" } else { "s" },
            want.len()
        );
    }
    for (i, (have, want)) in have.into_iter().zip(&want).enumerate() {
        if have != want {
            let which = if dist.is_chain() {
                format!("ODE block {} of the checkpoint's network", i + 1)
            } else {
                "the checkpoint's network".to_string()
            };
            bail!(
                "{which} does not fit the configured one: it has {}; use --init-from to start a different network from it",
                shape_differences(have, want).join(", ")
            );
        }
    }
    let local = |v: &[f64]| dist.extract(v);
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

/// Every key of a configuration with its value ("section.key" → value).
fn flat_keys(c: &Config) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            v => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    let table = toml::Value::try_from(c).expect("a Config always serializes");
    walk("", &table, &mut out);
    out
}

/// Why `key` may not change when a run resumes (None: it may), for a run whose checkpoint
/// has the configuration `stored` and which now has `new`; `seeded_data`: the seed chose the
/// data (Peaks, or the split of a file without a validation split).
fn resume_refusal(
    key: &str,
    stored: &Config,
    new: &Config,
    seeded_data: bool,
) -> Option<&'static str> {
    let spline = stored.is_spline() || new.is_spline();
    let nested = stored.nested.levels > 1 || new.nested.levels > 1;
    Some(match key {
        "controls.kind" => "the stored parameters would be read as another kind of controls",
        "controls.count" | "controls.degree" | "controls.knots" if spline => {
            "the stored spline coefficients would mean other functions of time"
        }
        "network.width" | "network.layers" => "the network's shape would change",
        "network.activation" | "network.opening" | "network.loss" | "network.final_time" => {
            "the stored parameters would define another network"
        }
        "optimizer.kind" => "the stored optimizer state belongs to the checkpoint's optimizer",
        "seed" if seeded_data => "the data would change (the seed generates Peaks and splits files without a validation split)",
        "nested.levels" => "the checkpoint's nested level would stand for another network",
        "nested.refine" if nested => "the checkpoint's nested level would stand for another network",
        _ => return None,
    })
}

/// Compares the configuration stored in a checkpoint (`stored`) with the one a resumed run
/// has (`new`: the stored one with the --set overrides). A change of a key that changes the
/// meaning of the stored parameters or optimizer state (`resume_refusal`) is refused,
/// naming every such key with both values; the other changes are allowed and returned as one
/// note each for the log.
pub fn resume_changes(stored: &Config, new: &Config, seeded_data: bool) -> Result<Vec<String>> {
    let (old, now) = (flat_keys(stored), flat_keys(new));
    let mut refused = Vec::new();
    let mut notes = Vec::new();
    for (key, value) in &now {
        let Some(before) = old.get(key).filter(|b| *b != value) else {
            continue;
        };
        match resume_refusal(key, stored, new, seeded_data) {
            Some(why) => refused.push(format!(
                "`{key}` ({before} in the checkpoint, {value} now: {why})"
            )),
            None => {
                let effect = if key.starts_with("network.init_") {
                    " (no effect: the parameters come from the checkpoint)"
                } else if key.starts_with("data.") || key == "seed" {
                    " (the run continues on other data)"
                } else if key == "parallel.chunks" {
                    " (sums over examples are grouped by other chunks: the continued run differs in the last bits)"
                } else {
                    ""
                };
                notes.push(format!(
                    "resumed with {key} = {value}, changed from {before}{effect}"
                ));
            }
        }
    }
    if !refused.is_empty() {
        bail!(
            "--resume cannot change {}; use --init-from to start a new run from the checkpoint's parameters",
            refused.join(", ")
        );
    }
    Ok(notes)
}

/// The parameters and block shapes that `--init-from` carries into a run with configuration
/// `run` whose first (nested) level has `first_layers` layers in each ODE block, and a note
/// when they were converted. The checkpoint's network must have as many ODE blocks as the
/// run's. Per-layer controls and spline coefficients of the same degree and knots are taken
/// as they are (see [`transfer`]); spline coefficients going into a per-layer run are
/// evaluated at the run's layers, block by block (θ_n = θ(n·T/N), exactly what the spline
/// network computes at that depth); per-layer controls going into a spline run, and splines
/// of another degree or knots, are refused: they have no exact form there.
pub fn init_parameters(
    ckpt: &Checkpoint,
    path: &Path,
    run: &Config,
    first_layers: &[usize],
) -> Result<(Vec<f64>, Vec<NetShape>, Option<String>)> {
    let origin = format!("the configuration stored in {}", path.display());
    let src = Config::from_toml(&ckpt.config, &origin)?;
    let shapes: Vec<NetShape> = ckpt.shapes().copied().collect();
    if shapes.len() != first_layers.len() {
        bail!(
            "--init-from {}: the checkpoint's network has {} ODE block{}, this run's {} (network.blocks)",
            path.display(),
            shapes.len(),
            if shapes.len() == 1 { "" } else { "s" },
            first_layers.len()
        );
    }
    let (from, to) = (&src.controls, &run.controls);
    match (src.is_spline(), run.is_spline()) {
        (false, false) => Ok((ckpt.params.clone(), shapes, None)),
        (false, true) => bail!(
            "--init-from {}: the checkpoint has per-layer controls and this run spline controls (controls.kind = \"spline\"); per-layer controls have no exact B-spline form: start the spline run afresh, or keep controls.kind = \"layer\"",
            path.display()
        ),
        (true, true) if (from.degree, from.knots) != (to.degree, to.knots) => bail!(
            "--init-from {}: the checkpoint's splines have degree {} on \"{}\" knots, this run's (controls.degree, controls.knots) degree {} on \"{}\" knots: the coefficients would mean other functions of time",
            path.display(),
            from.degree,
            from.knots.name(),
            to.degree,
            to.knots.name()
        ),
        (true, true) => Ok((ckpt.params.clone(), shapes, None)),
        (true, false) => {
            let total: usize = shapes.iter().map(|s| s.layout().len).sum();
            if ckpt.params.len() != total {
                bail!(
                    "--init-from {}: {} parameters do not fit the stored shape",
                    path.display(),
                    ckpt.params.len()
                );
            }
            let mut theta = Vec::new();
            let mut out_shapes = Vec::new();
            let mut start = 0;
            for (sh, &layers) in shapes.iter().zip(first_layers) {
                let len = sh.layout().len;
                let (t, s) =
                    evaluate_spline(&ckpt.params[start..start + len], sh, &src, layers, path)?;
                theta.extend(t);
                out_shapes.push(s);
                start += len;
            }
            let sh = &shapes[0];
            let at = if first_layers.len() == 1 {
                format!("the {} layers", first_layers[0])
            } else {
                let l: Vec<String> = first_layers.iter().map(|l| l.to_string()).collect();
                format!("the {} layers", l.join(" + "))
            };
            let note = format!(
                "--init-from: the checkpoint's spline controls ({} coefficient sets of degree {}) evaluated at {at} of this per-layer run",
                sh.hidden_sets, from.degree
            );
            Ok((theta, out_shapes, Some(note)))
        }
    }
}

/// One ODE block's spline coefficients `params` (of shape `sh`, from a run configured as
/// `src`) evaluated at the `layers` layers of a per-layer network, with that network's shape.
fn evaluate_spline(
    params: &[f64],
    sh: &NetShape,
    src: &Config,
    layers: usize,
    path: &Path,
) -> Result<(Vec<f64>, NetShape)> {
    let from = &src.controls;
    let basis = bspline::Basis::uniform(
        from.knots,
        from.degree,
        sh.hidden_sets,
        src.network.final_time,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "--init-from {}: the checkpoint's splines: {e}",
            path.display()
        )
    })?;
    let opening = if sh.opening_params {
        Opening::Activate
    } else {
        Opening::Replicate
    };
    let shape = Shape {
        layers,
        opening,
        ..sh.layout().shape
    };
    let net = Network::new(
        shape,
        src.network.activation,
        src.network.final_time,
        src.network.loss,
        Regularization::default(),
    );
    if params.len() != layer_parallel::spline_layout(&net, sh.hidden_sets).len {
        bail!(
            "--init-from {}: {} parameters do not fit the stored shape",
            path.display(),
            params.len()
        );
    }
    let theta = layer_parallel::SplineControls::new(basis, layers).global_model(&net, params);
    Ok((theta, net_shape(&net, layers)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use odenet::{Activation, Loss};

    fn net(layers: usize) -> Network {
        let shape = Shape::dense(2, 2, 3, layers);
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
        let shape = Shape::dense(2, 4, 3, 3);
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
