//! Layer-parallel evaluation of the objective: the hidden layers are split over the ranks and
//! both propagations are MGRIT solves (DESIGN §3).
//!
//! Ownership. The N + 1 time points are split into contiguous blocks (mgrit's
//! [`Distribution`]). Hidden layer n — the control θ_n and the forward state U_n it is
//! linearized at — belongs to the rank that owns time point n; the opening layer belongs to
//! rank 0 and the classifier to the last rank. The forward step to point n+1 is computed by
//! the owner of n+1 and needs θ_n, which for a rank's first point (and for coarse steps, whose
//! control is the fine layer at the coarse step's start) can live on another rank: those
//! *ghost* controls are exchanged before each solve. The adjoint runs in reverse time with
//! the ranks reversed, so each of its steps (to time a, linearized at U_a with θ_a) is local.
//!
//! Reproducibility. Every scalar that crosses ranks (loss, regularization, dot products) is
//! formed from per-layer partials summed in layer order, so a run gives the same bits on any
//! number of ranks.

use mgrit::{App, Comm, Distribution, MpiComm, Options, Solver, StepInfo};
use odenet::layer::{step_adjoint, step_adjoint_from, step_forward_in_place, step_gradient};
use odenet::linalg::{add_row_sums, dot, gemm};
use odenet::loss::loss_sum;
use odenet::network::ordered_sum;
use odenet::{Network, Opening};
use std::collections::BTreeMap;
use std::ops::Range;

/// Which time points, layers and parameter blocks this rank owns.
#[derive(Clone, Debug)]
pub struct Partition {
    pub rank: usize,
    pub size: usize,
    /// Hidden layers N.
    pub layers: usize,
    pub dist: Distribution,
    /// Owned time points [lo, hi).
    pub points: Range<usize>,
    /// Owned hidden layers [lo, min(hi, N)).
    pub owned_layers: Range<usize>,
}

impl Partition {
    pub fn new(layers: usize, rank: usize, size: usize) -> anyhow::Result<Self> {
        if size > layers {
            anyhow::bail!(
                "{size} ranks for {layers} hidden layers: layer-parallel training needs at most one rank per layer (network.layers ≥ ranks)"
            );
        }
        let dist = Distribution::new(layers, size, false);
        let points = dist.time_block(rank);
        let owned_layers = points.start..points.end.min(layers);
        Ok(Partition {
            rank,
            size,
            layers,
            dist,
            points,
            owned_layers,
        })
    }

    pub fn is_first(&self) -> bool {
        self.rank == 0
    }

    pub fn is_last(&self) -> bool {
        self.rank + 1 == self.size
    }

    /// The rank that owns hidden layer n.
    pub fn layer_owner(&self, n: usize) -> usize {
        self.dist.time_owner(n)
    }
}

/// Layout of this rank's part of a parameter vector: [opening (rank 0)] [hidden] [classifier
/// (last rank)], where hidden is the owned layers' controls (per-layer) or every B-spline
/// coefficient (spline controls, replicated on every rank). The unique parts, concatenated in
/// rank order, are the global vector.
#[derive(Clone, Debug)]
pub struct LocalLayout {
    pub opening: Range<usize>,
    pub layers: Range<usize>,
    pub classifier: Range<usize>,
    pub layer_len: usize,
    pub first_layer: usize,
    pub len: usize,
    /// The hidden block holds all M spline coefficients, the same on every rank.
    pub replicated: bool,
    /// This rank is rank 0 (which alone counts replicated blocks in dot products).
    pub first_rank: bool,
}

impl LocalLayout {
    /// Per-layer controls: the owned layers.
    pub fn new(net: &Network, part: &Partition) -> Self {
        Self::with_hidden(net, part, part.owned_layers.len(), false)
    }

    /// Spline controls: all `count` coefficient sets on every rank.
    pub fn spline(net: &Network, part: &Partition, count: usize) -> Self {
        Self::with_hidden(net, part, count, true)
    }

    fn with_hidden(net: &Network, part: &Partition, sets: usize, replicated: bool) -> Self {
        let g = &net.layout;
        let open_len = if part.is_first() {
            g.opening().len()
        } else {
            0
        };
        let layers = open_len..open_len + sets * g.layer_len;
        let class_len = if part.is_last() {
            g.classifier().len()
        } else {
            0
        };
        let classifier = layers.end..layers.end + class_len;
        LocalLayout {
            opening: 0..open_len,
            len: classifier.end,
            layers,
            classifier,
            layer_len: g.layer_len,
            first_layer: if replicated {
                0
            } else {
                part.owned_layers.start
            },
            replicated,
            first_rank: part.is_first(),
        }
    }

    /// The block of owned layer n (or coefficient set n).
    pub fn layer(&self, n: usize) -> Range<usize> {
        let s = self.layers.start + (n - self.first_layer) * self.layer_len;
        s..s + self.layer_len
    }

    /// The blocks in layer order whose partial dot products are summed in order; replicated
    /// coefficients count on rank 0 only.
    pub fn segments(&self) -> Vec<Range<usize>> {
        let mut s = Vec::new();
        if !self.opening.is_empty() {
            s.push(self.opening.clone());
        }
        if !self.replicated || self.first_rank {
            let mut start = self.layers.start;
            while start < self.layers.end {
                s.push(start..start + self.layer_len);
                start += self.layer_len;
            }
        }
        if !self.classifier.is_empty() {
            s.push(self.classifier.clone());
        }
        s
    }

    /// This rank's part of a global vector (global layout: opening, hidden sets, classifier).
    pub fn extract(&self, net: &Network, part: &Partition, global: &[f64]) -> Vec<f64> {
        let g = &net.layout;
        let open = g.opening().len();
        let class = g.classifier().len();
        let mut local = Vec::with_capacity(self.len);
        if part.is_first() {
            local.extend_from_slice(&global[..open]);
        }
        if self.replicated {
            local.extend_from_slice(&global[open..global.len() - class]);
        } else {
            for n in part.owned_layers.clone() {
                local.extend_from_slice(&global[g.layer(n)]);
            }
        }
        if part.is_last() {
            local.extend_from_slice(&global[global.len() - class..]);
        }
        local
    }

    /// The part of a local vector that no other rank holds (what a gather concatenates).
    pub fn unique<'a>(&self, local: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
        if !self.replicated || self.first_rank {
            return std::borrow::Cow::Borrowed(local);
        }
        let mut v = local[self.opening.clone()].to_vec();
        v.extend_from_slice(&local[self.classifier.clone()]);
        std::borrow::Cow::Owned(v)
    }
}

/// The global parameter layout of `net` with `sets` hidden parameter sets (its layers, or
/// spline coefficient sets).
pub fn spline_layout(net: &Network, sets: usize) -> odenet::Layout {
    odenet::Layout::new(odenet::Shape {
        layers: sets,
        ..net.layout.shape
    })
}

/// B-spline controls: the basis and, for every layer n, its non-zero functions at t_n = n·h.
pub struct SplineControls {
    pub basis: bspline::Basis,
    pub count: usize,
    at_layer: Vec<(usize, Vec<f64>)>,
}

impl SplineControls {
    pub fn new(basis: bspline::Basis, layers: usize) -> Self {
        let h = basis.t_end / layers as f64;
        let at_layer = (0..layers).map(|n| basis.eval(n as f64 * h)).collect();
        SplineControls {
            count: basis.count(),
            basis,
            at_layer,
        }
    }

    /// θ_n = Σ_i c_i B_i(t_n) into `out` (one layer's length).
    pub fn layer(&self, coef: &[f64], n: usize, out: &mut [f64]) {
        let len = out.len();
        let (i0, b) = &self.at_layer[n];
        out.fill(0.0);
        for (r, &br) in b.iter().enumerate() {
            for (o, &c) in out
                .iter_mut()
                .zip(&coef[(i0 + r) * len..(i0 + r + 1) * len])
            {
                *o += br * c;
            }
        }
    }

    /// acc[i] += B_i(t_n) g for the functions non-zero at t_n.
    pub fn add_gradient(&self, n: usize, g: &[f64], acc: &mut [f64]) {
        let len = g.len();
        let (i0, b) = &self.at_layer[n];
        for (r, &br) in b.iter().enumerate() {
            for (a, &x) in acc[(i0 + r) * len..(i0 + r + 1) * len].iter_mut().zip(g) {
                *a += br * x;
            }
        }
    }

    /// γ_tik/2 Σ‖c_i‖² + γ_ddt/2 ∫_0^T ‖θ'(t)‖² dt and its gradient (added into `grad`).
    pub fn regularization(
        &self,
        coef: &[f64],
        len: usize,
        tik: f64,
        ddt: f64,
        grad: &mut [f64],
    ) -> f64 {
        let mut v = 0.5 * tik * dot(coef, coef);
        for (g, &c) in grad.iter_mut().zip(coef) {
            *g += tik * c;
        }
        if ddt != 0.0 {
            v += 0.5
                * ddt
                * self
                    .basis
                    .derivative_energy(coef, len, 0.5 * ddt, Some(grad));
        }
        v
    }
}

/// Inner products on the distributed θ: per-segment partial dot products, gathered and
/// summed in layer order.
pub struct DistSpace<'a> {
    pub comm: &'a MpiComm,
    pub segments: Vec<Range<usize>>,
}

impl optim::Space for DistSpace<'_> {
    fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        let partials: Vec<f64> = self
            .segments
            .iter()
            .map(|r| dot(&a[r.clone()], &b[r.clone()]))
            .collect();
        ordered_sum(&self.comm.all_gather(&partials))
    }
}

/// Hidden-layer controls as a step sees them: owned ones from the local θ, others from the
/// ghost copies received for this evaluation.
struct Controls<'a> {
    local: &'a [f64],
    layout: &'a LocalLayout,
    owned: Range<usize>,
    ghosts: &'a BTreeMap<usize, Vec<f64>>,
    width: usize,
}

impl<'a> Controls<'a> {
    /// The controls of θ for a rank with this layout, partition and ghost copies (taking
    /// the fields, not the `DistNet`, so the solvers can be borrowed mutably alongside).
    fn new(
        local: &'a [f64],
        layout: &'a LocalLayout,
        part: &Partition,
        ghosts: &'a BTreeMap<usize, Vec<f64>>,
        width: usize,
    ) -> Self {
        Controls {
            local,
            layout,
            owned: part.owned_layers.clone(),
            ghosts,
            width,
        }
    }

    fn layer(&self, n: usize) -> &[f64] {
        if self.owned.contains(&n) {
            &self.local[self.layout.layer(n)]
        } else {
            self.ghosts
                .get(&n)
                .unwrap_or_else(|| panic!("ghost control of layer {n} was not exchanged"))
        }
    }

    /// (K_n, b_n).
    fn kb(&self, n: usize) -> (&[f64], &[f64]) {
        self.layer(n).split_at(self.width * self.width)
    }
}

/// Forward propagation as an MGRIT application: U ← U + Δt σ(K U + b 1ᵀ), with the control of
/// the step's start time (rediscretization on coarse levels).
struct ForwardApp<'a> {
    net: &'a Network,
    ctrl: Controls<'a>,
    open: &'a [f64],
    x: &'a [f64],
    batch: usize,
    z: Vec<f64>,
}

impl App for ForwardApp<'_> {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        let (k, b) = self.ctrl.kb(info.from);
        step_forward_in_place(
            self.net.activation,
            info.dt,
            self.ctrl.width,
            k,
            b,
            u,
            &mut self.z,
        );
    }

    fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, info: &StepInfo) {
        let (k, b) = self.ctrl.kb(info.from);
        odenet::layer::step_forward(
            self.net.activation,
            info.dt,
            self.ctrl.width,
            k,
            b,
            src,
            &mut self.z,
            dst,
        );
    }

    fn init(&mut self, index: usize) -> Vec<f64> {
        let w = self.ctrl.width;
        let mut u = vec![0.0; w * self.batch];
        if index == 0 {
            let mut pre = vec![0.0; w * self.batch];
            open_with(self.net, self.open, self.x, &mut u, &mut pre);
        }
        u
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        axpby(alpha, x, beta, y);
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        dot(x, x).sqrt()
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        buf.extend_from_slice(x);
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        buf.to_vec()
    }
}

/// Adjoint propagation in reverse time: λ_a = λ_b + Δt K_aᵀ (σ'(K_a U_a + b_a) ⊙ λ_b) for a
/// step from time b down to a, linearized at the stored forward state U_a.
///
/// With `grad` set (a one-level solve, where every fine step runs exactly once) the fine
/// steps also accumulate ∂J/∂θ_a, as the serial adjoint does.
struct AdjointApp<'a> {
    net: &'a Network,
    ctrl: Controls<'a>,
    forward: &'a Solver<Vec<f64>, MpiComm>,
    lambda_final: &'a [f64],
    batch: usize,
    z: Vec<f64>,
    s: Vec<f64>,
    grad: Option<(&'a mut [f64], &'a LocalLayout)>,
}

impl AdjointApp<'_> {
    /// The adjoint step of `info` into `lam`: in place, or from `lam_next` when given.
    fn adjoint_step(&mut self, lam_next: Option<&[f64]>, lam: &mut [f64], info: &StepInfo) {
        let a = info.to;
        let (k, b) = self.ctrl.kb(a);
        let u = self
            .forward
            .state(a)
            .expect("the forward state of an adjoint step is local");
        let (act, w) = (self.net.activation, self.ctrl.width);
        let g = match (&mut self.grad, info.level) {
            (Some((g, layout)), 0) => Some(g[layout.layer(a)].split_at_mut(w * w)),
            _ => None,
        };
        let (z, s) = (&mut self.z, &mut self.s);
        match lam_next {
            None => step_adjoint(act, info.dt, w, k, b, u, lam, z, s, g),
            Some(next) => step_adjoint_from(act, info.dt, w, k, b, u, next, lam, z, s, g),
        }
    }
}

impl App for AdjointApp<'_> {
    type State = Vec<f64>;

    fn step(&mut self, lam: &mut Vec<f64>, info: &StepInfo) {
        self.adjoint_step(None, lam, info);
    }

    fn step_from(&mut self, lam_next: &Vec<f64>, lam: &mut Vec<f64>, info: &StepInfo) {
        lam.resize(lam_next.len(), 0.0);
        self.adjoint_step(Some(lam_next), lam, info);
    }

    fn init(&mut self, index: usize) -> Vec<f64> {
        if index == self.net.layout.shape.layers {
            self.lambda_final.to_vec()
        } else {
            vec![0.0; self.ctrl.width * self.batch]
        }
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        axpby(alpha, x, beta, y);
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        dot(x, x).sqrt()
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        buf.extend_from_slice(x);
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        buf.to_vec()
    }
}

fn axpby(alpha: f64, x: &[f64], beta: f64, y: &mut [f64]) {
    if beta == 0.0 {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = alpha * xi;
        }
    } else {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = alpha * xi + beta * *yi;
        }
    }
}

/// The opening layer from the opening block alone (the serial code reads it from θ).
fn open_with(net: &Network, open: &[f64], x: &[f64], u0: &mut [f64], pre: &mut [f64]) {
    let sh = net.layout.shape;
    match sh.opening {
        Opening::Activate => {
            let (w, b) = open.split_at(sh.width * sh.input);
            let batch = x.len() / sh.input;
            odenet::linalg::broadcast_columns(b, pre);
            gemm(sh.width, sh.input, batch, 1.0, w, false, x, false, 1.0, pre);
            for (u, &a) in u0.iter_mut().zip(pre.iter()) {
                *u = net.activation.value(a);
            }
        }
        Opening::Replicate => {
            u0.fill(0.0);
            for (ucol, xcol) in u0.chunks_exact_mut(sh.width).zip(x.chunks_exact(sh.input)) {
                ucol[..sh.input].copy_from_slice(xcol);
            }
        }
    }
}

/// MGRIT settings of the forward and adjoint solves.
#[derive(Clone, Debug, PartialEq)]
pub struct SolverSettings {
    pub forward: Options,
    pub adjoint: Options,
}

/// J and metrics from one distributed evaluation (identical on every rank).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistValue {
    pub objective: f64,
    pub loss: f64,
    pub correct: usize,
    pub count: usize,
    /// Last forward / adjoint MGRIT residual norm (None for the serial sweep).
    pub fwd_res: Option<f64>,
    pub adj_res: Option<f64>,
}

/// The network split across ranks, with its MGRIT solvers.
pub struct DistNet<'c> {
    pub net: Network,
    pub part: Partition,
    /// Layout of this rank's part of the optimizer's vector (per-layer: the same as
    /// `model_layout`; spline: opening, all coefficients, classifier).
    pub layout: LocalLayout,
    /// Layout of this rank's per-layer controls θ_n (what the propagation uses).
    pub model_layout: LocalLayout,
    /// B-spline controls: θ_n = Σ_i c_i B_i(t_n).
    spline: Option<SplineControls>,
    pub comm: &'c MpiComm,
    settings: SolverSettings,
    forward: Solver<Vec<f64>, MpiComm>,
    adjoint: Solver<Vec<f64>, MpiComm>,
    /// Exact one-level sweeps for evaluation, one per batch size (states are reused).
    sweeps: BTreeMap<usize, Solver<Vec<f64>, MpiComm>>,
    batch: usize,
    /// Layers this rank needs from others, and what it sends: (layer, to rank).
    needs: Vec<usize>,
    sends: Vec<(usize, usize)>,
    ghosts: BTreeMap<usize, Vec<f64>>,
    // Scratch, w × B or C × B.
    z: Vec<f64>,
    s: Vec<f64>,
    logits: Vec<f64>,
    seed: Vec<f64>,
    lambda_final: Vec<f64>,
    /// Step calls of this rank per MGRIT level, forward and adjoint, since the last reset.
    pub fwd_steps: Vec<u64>,
    pub adj_steps: Vec<u64>,
}

const GHOST_TAG: i32 = 7001;
const LAMBDA_TAG: i32 = 7002;

impl<'c> DistNet<'c> {
    /// Per-layer controls.
    pub fn new(net: Network, comm: &'c MpiComm, settings: SolverSettings) -> anyhow::Result<Self> {
        Self::with_controls(net, comm, settings, None)
    }

    /// Per-layer controls, or spline controls with the given basis.
    pub fn with_controls(
        net: Network,
        comm: &'c MpiComm,
        settings: SolverSettings,
        spline: Option<bspline::Basis>,
    ) -> anyhow::Result<Self> {
        let (rank, size) = (comm.rank(), comm.size());
        let n = net.layout.shape.layers;
        let part = Partition::new(n, rank, size)?;
        let model_layout = LocalLayout::new(&net, &part);
        let spline = spline.map(|b| SplineControls::new(b, n));
        let layout = match &spline {
            Some(sp) => LocalLayout::spline(&net, &part, sp.count),
            None => model_layout.clone(),
        };
        let t = net.final_time;
        let mk = |o: &Options| {
            Solver::new(n, 0.0, t, o.clone(), comm.duplicate())
                .map_err(|e| anyhow::anyhow!("invalid MGRIT settings: {e}"))
        };
        let forward = mk(&settings.forward)?;
        let adjoint = mk(&Options {
            reverse: true,
            ..settings.adjoint.clone()
        })?;
        let needs_of = |q: usize| {
            ghost_needs(
                &net,
                &forward,
                &Partition::new(n, q, size).expect("size ≤ N"),
            )
        };
        let needs = needs_of(rank);
        let mut sends = Vec::new();
        // Spline controls are computed locally from the replicated coefficients.
        for q in (0..size).filter(|_| spline.is_none()) {
            if q != rank {
                for l in needs_of(q) {
                    if part.layer_owner(l) == rank {
                        sends.push((l, q));
                    }
                }
            }
        }
        Ok(DistNet {
            net,
            part,
            layout,
            model_layout,
            spline,
            comm,
            settings,
            forward,
            adjoint,
            sweeps: BTreeMap::new(),
            batch: 0,
            needs,
            sends,
            ghosts: BTreeMap::new(),
            z: Vec::new(),
            s: Vec::new(),
            logits: Vec::new(),
            seed: Vec::new(),
            lambda_final: Vec::new(),
            fwd_steps: Vec::new(),
            adj_steps: Vec::new(),
        })
    }

    pub fn settings(&self) -> &SolverSettings {
        &self.settings
    }

    /// The forward solver's level hierarchy.
    pub fn grid(&self) -> &mgrit::Grid {
        self.forward.grid()
    }

    /// Number of MGRIT levels of the forward solve.
    pub fn levels(&self) -> usize {
        self.forward.grid().num_levels()
    }

    /// Sends the owned controls other ranks need and receives this rank's ghosts: one message
    /// per pair of ranks, layers in increasing order.
    fn exchange_ghosts(&mut self, theta: &[f64]) {
        if self.spline.is_some() {
            return; // filled by `spline_model`
        }
        let mut by_dest: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &(l, q) in &self.sends {
            by_dest
                .entry(q)
                .or_default()
                .extend_from_slice(&theta[self.model_layout.layer(l)]);
        }
        for (q, buf) in by_dest {
            self.comm.send(q, GHOST_TAG, buf);
        }
        let mut by_src: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &l in &self.needs {
            by_src.entry(self.part.layer_owner(l)).or_default().push(l);
        }
        self.ghosts.clear();
        let len = self.model_layout.layer_len;
        for (src, layers) in by_src {
            let buf = self.comm.recv(src, GHOST_TAG);
            assert_eq!(buf.len(), layers.len() * len, "ghost message size");
            for (k, l) in layers.into_iter().enumerate() {
                self.ghosts.insert(l, buf[k * len..(k + 1) * len].to_vec());
            }
        }
        self.comm.wait_sends();
    }

    fn ensure_batch(&mut self, batch: usize) {
        let sh = self.net.layout.shape;
        if self.batch != batch {
            self.batch = batch;
            self.forward.reset();
            self.adjoint.reset();
            for v in [&mut self.z, &mut self.s] {
                v.resize(sh.width * batch, 0.0);
            }
            self.logits.resize(sh.classes * batch, 0.0);
            self.seed.resize(sh.classes * batch, 0.0);
            self.lambda_final.resize(sh.width * batch, 0.0);
        }
    }

    fn controls<'a>(&'a self, theta: &'a [f64]) -> Controls<'a> {
        Controls::new(
            theta,
            &self.model_layout,
            &self.part,
            &self.ghosts,
            self.net.layout.shape.width,
        )
    }

    /// Broadcasts values known on the last rank (the owner of U_N) to every rank.
    fn from_last(&self, values: &[f64]) -> Vec<f64> {
        let mine: &[f64] = if self.part.is_last() { values } else { &[] };
        self.comm.all_gather(mine)
    }

    /// Loss and accuracy of θ on (x, labels) by an exact forward sweep (pipelined over ranks).
    pub fn evaluate(&mut self, params: &[f64], x: &[f64], labels: &[usize]) -> (f64, f64) {
        if self.spline.is_some() {
            let theta = self.spline_model(params);
            return self.model_evaluate(&theta, x, labels);
        }
        self.model_evaluate(params, x, labels)
    }

    fn model_evaluate(&mut self, theta: &[f64], x: &[f64], labels: &[usize]) -> (f64, f64) {
        let batch = labels.len();
        self.exchange_ghosts(theta);
        let sh = self.net.layout.shape;
        let mut app = ForwardApp {
            net: &self.net,
            ctrl: Controls::new(
                theta,
                &self.model_layout,
                &self.part,
                &self.ghosts,
                sh.width,
            ),
            open: &theta[self.model_layout.opening.clone()],
            x,
            batch,
            z: vec![0.0; sh.width * batch],
        };
        let sweep = match self.sweeps.entry(batch) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let o = Options {
                    max_levels: 1,
                    warm_restart: true,
                    ..Options::default()
                };
                e.insert(
                    Solver::new(
                        sh.layers,
                        0.0,
                        self.net.final_time,
                        o,
                        self.comm.duplicate(),
                    )
                    .expect("valid"),
                )
            }
        };
        sweep.solve(&mut app);
        let mut out = [0.0, 0.0];
        if self.part.is_last() {
            let mut logits = vec![0.0; sh.classes * batch];
            let u = sweep.state(sh.layers).expect("the last rank owns U_N");
            classify_with(
                &self.net,
                &theta[self.model_layout.classifier.clone()],
                u,
                &mut logits,
            );
            let (l, c) = loss_sum(self.net.loss, sh.classes, &logits, labels, None);
            out = [l / batch as f64, c as f64 / batch as f64];
        }
        let v = self.from_last(&out);
        (v[0], v[1])
    }

    /// The per-layer θ of this rank (and its ghost layers) from spline coefficients.
    fn spline_model(&mut self, params: &[f64]) -> Vec<f64> {
        let sp = self.spline.as_ref().expect("spline controls");
        let coef = &params[self.layout.layers.clone()];
        let ml = &self.model_layout;
        let mut theta = vec![0.0; ml.len];
        theta[ml.opening.clone()].copy_from_slice(&params[self.layout.opening.clone()]);
        theta[ml.classifier.clone()].copy_from_slice(&params[self.layout.classifier.clone()]);
        for n in self.part.owned_layers.clone() {
            sp.layer(coef, n, &mut theta[ml.layer(n)]);
        }
        self.ghosts.clear();
        for &l in &self.needs {
            let mut v = vec![0.0; ml.layer_len];
            sp.layer(coef, l, &mut v);
            self.ghosts.insert(l, v);
        }
        theta
    }

    /// Debug builds: the replicated coefficients are bit-for-bit the same on every rank.
    fn check_replicated(&self, coef: &[f64]) {
        let fp = crate::parallel::fingerprint(coef);
        let halves = [(fp >> 32) as f64, (fp & 0xffff_ffff) as f64];
        let all = self.comm.all_gather(&halves);
        assert!(
            all.chunks(2).all(|c| c == halves),
            "spline coefficients differ between ranks"
        );
    }

    /// dJ/dc_i = Σ_n B_i(t_n) dJ/dθ_n, summed in layer order along a chain of ranks (rank r
    /// adds its layers to the running sum from rank r−1), so the grouping is the serial one
    /// for every rank count; the last rank's total goes to every rank.
    fn coefficient_gradient(&self, grad_model: &[f64]) -> Vec<f64> {
        const CHAIN_TAG: i32 = 7003;
        let sp = self.spline.as_ref().expect("spline controls");
        let len = self.model_layout.layer_len;
        let mut acc = if self.part.is_first() {
            vec![0.0; sp.count * len]
        } else {
            self.comm.recv(self.part.rank - 1, CHAIN_TAG)
        };
        for n in self.part.owned_layers.clone() {
            sp.add_gradient(n, &grad_model[self.model_layout.layer(n)], &mut acc);
        }
        if !self.part.is_last() {
            self.comm.send(self.part.rank + 1, CHAIN_TAG, acc.clone());
            self.comm.wait_sends();
        }
        self.from_last(&acc)
    }

    /// J at the optimizer's parameters (per-layer controls or spline coefficients) on the
    /// batch, and its gradient (this rank's part), with forward and adjoint MGRIT.
    pub fn objective_gradient(
        &mut self,
        params: &[f64],
        x: &[f64],
        labels: &[usize],
        grad: &mut [f64],
    ) -> DistValue {
        if self.spline.is_none() {
            return self.model_objective_gradient(params, x, labels, grad, true, None);
        }
        if cfg!(debug_assertions) {
            self.check_replicated(&params[self.layout.layers.clone()]);
        }
        let theta = self.spline_model(params);
        let len = self.model_layout.layer_len;
        let r = self.net.regularization;
        let coef = &params[self.layout.layers.clone()];
        let mut reg_grad = vec![0.0; coef.len()];
        let creg = self.spline.as_ref().expect("spline").regularization(
            coef,
            len,
            r.tikhonov,
            r.ddt,
            &mut reg_grad,
        );
        let mut gm = vec![0.0; self.model_layout.len];
        let extra = self.part.is_first().then_some(creg);
        let v = self.model_objective_gradient(&theta, x, labels, &mut gm, false, extra);
        grad.fill(0.0);
        grad[self.layout.opening.clone()].copy_from_slice(&gm[self.model_layout.opening.clone()]);
        grad[self.layout.classifier.clone()]
            .copy_from_slice(&gm[self.model_layout.classifier.clone()]);
        let gc = self.coefficient_gradient(&gm);
        for ((g, a), b) in grad[self.layout.layers.clone()]
            .iter_mut()
            .zip(&gc)
            .zip(&reg_grad)
        {
            *g = a + b;
        }
        v
    }

    /// J(θ) for per-layer controls θ (this rank's part) and its gradient. `hidden_reg`
    /// includes the per-layer regularization of the hidden layers; `extra` is a term rank 0
    /// adds after the opening layer's (the spline coefficients' regularization).
    fn model_objective_gradient(
        &mut self,
        theta: &[f64],
        x: &[f64],
        labels: &[usize],
        grad: &mut [f64],
        hidden_reg: bool,
        extra: Option<f64>,
    ) -> DistValue {
        let sh = self.net.layout.shape;
        let (w, c, nl) = (sh.width, sh.classes, sh.layers);
        let batch = labels.len();
        self.ensure_batch(batch);
        self.exchange_ghosts(theta);
        grad.fill(0.0);

        // Forward solve.
        let fstats = {
            let mut app = ForwardApp {
                net: &self.net,
                ctrl: Controls::new(theta, &self.model_layout, &self.part, &self.ghosts, w),
                open: &theta[self.model_layout.opening.clone()],
                x,
                batch,
                z: std::mem::take(&mut self.z),
            };
            let st = self.forward.solve(&mut app);
            self.z = app.z;
            st
        };

        // Loss, classifier gradient and λ_N on the last rank.
        let mut scalars = [0.0, 0.0];
        if self.part.is_last() {
            let u_n = self.forward.state(nl).expect("the last rank owns U_N");
            let class = &theta[self.model_layout.classifier.clone()];
            classify_with(&self.net, class, u_n, &mut self.logits);
            let scale = 1.0 / batch as f64;
            let (total, correct) = loss_sum(
                self.net.loss,
                c,
                &self.logits,
                labels,
                Some((&mut self.seed, scale)),
            );
            scalars = [total * scale, correct as f64];
            let (gw, gb) = grad[self.model_layout.classifier.clone()].split_at_mut(c * w);
            gemm(c, batch, w, 1.0, &self.seed, false, u_n, true, 1.0, gw);
            add_row_sums(c, &self.seed, gb);
            gemm(
                w,
                c,
                batch,
                1.0,
                &class[..c * w],
                true,
                &self.seed,
                false,
                0.0,
                &mut self.lambda_final,
            );
        }

        // Adjoint solve (with one level, the fine steps also form the layer gradients).
        let fused = self.adjoint.grid().num_levels() == 1;
        let layer_grad = fused.then(|| &mut grad[self.model_layout.layers.clone()]);
        // The layout of the hidden-layer slice on its own.
        let shifted = LocalLayout {
            layers: 0..self.model_layout.layers.len(),
            ..self.model_layout.clone()
        };
        let astats = {
            let mut app = AdjointApp {
                net: &self.net,
                ctrl: Controls::new(theta, &self.model_layout, &self.part, &self.ghosts, w),
                forward: &self.forward,
                lambda_final: &self.lambda_final,
                batch,
                z: std::mem::take(&mut self.z),
                s: std::mem::take(&mut self.s),
                grad: layer_grad.map(|g| (g, &shifted)),
            };
            let st = self.adjoint.solve(&mut app);
            self.z = app.z;
            self.s = app.s;
            st
        };

        // Layer gradients from λ_{n+1} and U_n: S_n = σ'(K_n U_n + b_n) ⊙ h λ_{n+1}.
        let (lo, hi) = (self.part.points.start, self.part.points.end);
        // (Already done by the fused one-level adjoint.)
        if !fused {
            if lo > 0 {
                let lam_lo = self.adjoint.state(lo).expect("owned");
                self.comm
                    .send(self.part.rank - 1, LAMBDA_TAG, lam_lo.clone());
            }
            // Every rank but the last owns layer hi−1, whose λ_hi is the right neighbour's first.
            let lam_hi = if !self.part.is_last() {
                Some(self.comm.recv(self.part.rank + 1, LAMBDA_TAG))
            } else {
                None
            };
            let h = self.net.step_size();
            for n in self.part.owned_layers.clone() {
                let next = if n + 1 < hi {
                    self.adjoint.state(n + 1).expect("owned")
                } else {
                    lam_hi.as_ref().expect("received λ")
                };
                let range = self.model_layout.layer(n);
                let (k, b) = theta[range.clone()].split_at(w * w);
                let (gk, gb) = grad[range].split_at_mut(w * w);
                let u = self.forward.state(n).expect("owned");
                step_gradient(
                    self.net.activation,
                    h,
                    w,
                    k,
                    b,
                    u,
                    next,
                    &mut self.z,
                    &mut self.s,
                    gk,
                    gb,
                );
            }
            self.comm.wait_sends();
        }

        // Opening gradient on rank 0: (σ'(A) ⊙ Λ_0) Xᵀ and row sums.
        if self.part.is_first() && sh.opening == Opening::Activate {
            let open = &theta[self.model_layout.opening.clone()];
            let mut u0 = vec![0.0; w * batch];
            open_with(&self.net, open, x, &mut u0, &mut self.z);
            let lam0 = self.adjoint.state(0).expect("rank 0 owns λ_0");
            for (s, (&a, &l)) in self.s.iter_mut().zip(self.z.iter().zip(lam0)) {
                *s = self.net.activation.derivative(a) * l;
            }
            let (gw, gb) = grad[self.model_layout.opening.clone()].split_at_mut(w * sh.input);
            gemm(w, batch, sh.input, 1.0, &self.s, false, x, true, 1.0, gw);
            add_row_sums(w, &self.s, gb);
        }

        // Regularization, per block in layer order.
        let mut terms = Vec::new();
        if self.part.is_first() {
            let r = self.model_layout.opening.clone();
            terms.push(
                self.net
                    .opening_regularization(&theta[r.clone()], Some(&mut grad[r])),
            );
        }
        terms.extend(extra);
        let ctrl = Controls::new(theta, &self.model_layout, &self.part, &self.ghosts, w);
        for n in self.part.owned_layers.clone().filter(|_| hidden_reg) {
            let prev = (n > 0).then(|| ctrl.layer(n - 1));
            let next = (n + 1 < nl).then(|| ctrl.layer(n + 1));
            let r = self.model_layout.layer(n);
            terms.push(self.net.layer_regularization(
                prev,
                &theta[r.clone()],
                next,
                Some(&mut grad[r]),
            ));
        }
        if self.part.is_last() {
            let r = self.model_layout.classifier.clone();
            terms.push(
                self.net
                    .classifier_regularization(&theta[r.clone()], Some(&mut grad[r])),
            );
        }
        let reg = ordered_sum(&self.comm.all_gather(&terms));
        let s = self.from_last(&scalars);
        for (acc, st) in [
            (&mut self.fwd_steps, &fstats),
            (&mut self.adj_steps, &astats),
        ] {
            acc.resize(st.steps_per_level.len().max(acc.len()), 0);
            for (a, s) in acc.iter_mut().zip(&st.steps_per_level) {
                *a += s;
            }
        }
        DistValue {
            objective: s[0] + reg,
            loss: s[0],
            correct: s[1] as usize,
            count: batch,
            fwd_res: fstats.residuals.last().copied(),
            adj_res: astats.residuals.last().copied(),
        }
    }

    /// The regularization value at the optimizer's parameters.
    pub fn regularization(&mut self, params: &[f64]) -> f64 {
        if self.spline.is_none() {
            return self.model_regularization(params, true, None);
        }
        let theta = self.spline_model(params);
        let r = self.net.regularization;
        let coef = &params[self.layout.layers.clone()];
        let mut scratch = vec![0.0; coef.len()];
        let len = self.model_layout.layer_len;
        let creg = self.spline.as_ref().expect("spline").regularization(
            coef,
            len,
            r.tikhonov,
            r.ddt,
            &mut scratch,
        );
        let extra = self.part.is_first().then_some(creg);
        self.model_regularization(&theta, false, extra)
    }

    /// The regularization value at per-layer θ (ghost controls exchanged for the
    /// time-derivative term).
    fn model_regularization(&mut self, theta: &[f64], hidden_reg: bool, extra: Option<f64>) -> f64 {
        self.exchange_ghosts(theta);
        let nl = self.part.layers;
        let ctrl = self.controls(theta);
        let mut terms = Vec::new();
        if self.part.is_first() {
            terms.push(
                self.net
                    .opening_regularization(&theta[self.model_layout.opening.clone()], None),
            );
        }
        terms.extend(extra);
        for n in self.part.owned_layers.clone().filter(|_| hidden_reg) {
            let prev = (n > 0).then(|| ctrl.layer(n - 1));
            let next = (n + 1 < nl).then(|| ctrl.layer(n + 1));
            terms.push(
                self.net
                    .layer_regularization(prev, ctrl.layer(n), next, None),
            );
        }
        if self.part.is_last() {
            terms.push(
                self.net
                    .classifier_regularization(&theta[self.model_layout.classifier.clone()], None),
            );
        }
        ordered_sum(&self.comm.all_gather(&terms))
    }

    /// The global parameter vector (opening, hidden sets in order, classifier) on every rank.
    pub fn gather(&self, params: &[f64]) -> Vec<f64> {
        self.comm.all_gather(&self.layout.unique(params))
    }

    /// Whether the hidden controls are B-splines.
    pub fn is_spline(&self) -> bool {
        self.spline.is_some()
    }
}

/// Z = W_c U_N + b_c 1ᵀ from the classifier block alone.
fn classify_with(net: &Network, class: &[f64], u: &[f64], logits: &mut [f64]) {
    let sh = net.layout.shape;
    let batch = u.len() / sh.width;
    let (w, b) = class.split_at(sh.classes * sh.width);
    odenet::linalg::broadcast_columns(b, logits);
    gemm(
        sh.classes, sh.width, batch, 1.0, w, false, u, false, 1.0, logits,
    );
}

/// The hidden layers a rank needs but does not own: the control of the step into its first
/// point on every forward level (the fine layer at that step's start), and the neighbours of
/// its first and last layer for the time-derivative regularization.
fn ghost_needs(net: &Network, forward: &Solver<Vec<f64>, MpiComm>, part: &Partition) -> Vec<usize> {
    let n = part.layers;
    let (lo, hi) = (part.points.start, part.points.end);
    let mut needs = std::collections::BTreeSet::new();
    for shape in &forward.grid().levels {
        let r = part
            .dist
            .level_range(part.rank, shape.stride, shape.points());
        if !r.is_empty() && r.start >= 1 {
            let l = (r.start - 1) * shape.stride;
            if l < lo {
                needs.insert(l);
            }
        }
    }
    if lo >= 1 {
        needs.insert(lo - 1);
    }
    if hi < n && !part.owned_layers.is_empty() {
        needs.insert(hi);
    }
    let _ = net;
    needs
        .into_iter()
        .filter(|&l| !part.owned_layers.contains(&l))
        .collect()
}
