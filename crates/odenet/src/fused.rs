//! Fused one-pass kernels for narrow layers (w = 4, 8 or 16) on x86-64 with AVX2 and FMA, and
//! for w = 8 and 16 with AVX-512 F where the CPU has it (the same bits: [`column_kernels`]).
//!
//! For a narrow layer the step is memory-bound: a GEMM packs U, writes Z = K U + b 1ᵀ, and an
//! elementwise pass reads Z and U again. These kernels keep K (and Kᵀ) in registers and treat
//! one example (one column u_j of the w × B state, contiguous in memory) at a time:
//!
//! - forward:  z_j = b + Σ_l K(:, l) u_j(l),  u⁺_j = u_j + h σ(z_j);
//! - adjoint:  s_j = σ'(z_j) ⊙ (h λ⁺_j),  λ_j = λ⁺_j + Σ_r Kᵀ(:, r) s_j(r);
//! - gradient: ∂J/∂K += Σ_j s_j u_jᵀ and ∂J/∂b += Σ_j s_j, summed over j in order in local
//!   accumulators and added to the output once.
//!
//! Every sum is taken in a fixed order with fused multiply-adds, so a column gives the same bits
//! wherever it is computed. [`crate::layer`] calls these when [`supported`] says so.

use crate::activation::SMOOTH_RELU_ETA;
use crate::layer::DenseStep;
use crate::Activation;

/// An activation as a type, so that each kernel is compiled for one σ.
trait Sigma {
    const ACT: Activation;
}
struct Tanh;
struct Relu;
struct SmoothRelu;
impl Sigma for Tanh {
    const ACT: Activation = Activation::Tanh;
}
impl Sigma for Relu {
    const ACT: Activation = Activation::Relu;
}
impl Sigma for SmoothRelu {
    const ACT: Activation = Activation::SmoothRelu;
}

/// Widths with a fused kernel.
const WIDTHS: [usize; 3] = [4, 8, 16];

/// Whether the fused kernels serve this width on this machine.
#[inline]
pub fn supported(width: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        WIDTHS.contains(&width)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = width;
        false
    }
}

/// The column kernels, written once over a vector type `V` of `LANES` doubles and the
/// vector operations of the module they are expanded in (`zero`, `splat`, `add`, `mul`,
/// `fmadd`, `fnmadd`, `loadu`, `storeu`, σ and σ' as `value` and `derivative`), every function
/// compiled with the target features `$feat`. The two expansions perform the same operations
/// in the same order on each lane, so they give the same bits.
#[cfg(target_arch = "x86_64")]
macro_rules! column_kernels {
    ($feat:literal) => {
        /// 1 − t² with one rounding ([`crate::activation::tanh_derivative_from`]).
        #[inline]
        #[target_feature(enable = $feat)]
        fn one_minus_square(t: V) -> V {
            fnmadd(t, t, splat(1.0))
        }

        /// Loads `NV` vectors from `p[0..LANES NV]`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn load<const NV: usize>(p: &[f64]) -> [V; NV] {
            assert!(p.len() >= LANES * NV);
            let mut out = [zero(); NV];
            for (v, o) in out.iter_mut().enumerate() {
                // SAFETY: the assertion bounds every four-double read.
                *o = unsafe { loadu(p.as_ptr().add(LANES * v)) };
            }
            out
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn store<const NV: usize>(p: &mut [f64], x: &[V; NV]) {
            assert!(p.len() >= LANES * NV);
            for (v, xv) in x.iter().enumerate() {
                // SAFETY: bounded by the assertion.
                unsafe { storeu(p.as_mut_ptr().add(LANES * v), *xv) };
            }
        }

        /// K (column-major W × W) as W columns of NV vectors, and Kᵀ likewise.
        #[inline]
        #[target_feature(enable = $feat)]
        fn matrix<const W: usize, const NV: usize>(k: &[f64], transpose: bool) -> [[V; NV]; W] {
            assert!(W == LANES * NV && k.len() >= W * W);
            let mut col = [0.0; W];
            std::array::from_fn(|l| {
                for (i, c) in col.iter_mut().enumerate() {
                    *c = if transpose {
                        k[l + i * W]
                    } else {
                        k[i + l * W]
                    };
                }
                load::<NV>(&col)
            })
        }

        /// One layer held in vectors for the column kernels: K, Kᵀ (adjoint only), b and h, and
        /// the gradient accumulators Σ_j s_j u_jᵀ and Σ_j s_j.
        ///
        /// The methods take a group of C consecutive columns (C W contiguous values) at once. A
        /// column's own sums are the single-column sums, term for term: grouping only interleaves
        /// C independent chains of fused multiply-adds, so that the FMA units are not left waiting
        /// on one chain's latency, and loads each K vector (and each gradient accumulator) once
        /// for C columns. The gradient adds the group's columns in their order, so Σ_j runs over j
        /// in order whatever the grouping.
        struct Layer<const W: usize, const NV: usize> {
            k: [[V; NV]; W],
            kt: [[V; NV]; W],
            b: [V; NV],
            h: V,
            gk: [[V; NV]; W],
            gb: [V; NV],
        }

        /// C columns of W values, each as NV vectors.
        type Columns<const NV: usize, const C: usize> = [[V; NV]; C];

        /// Loads C columns from `p[0..C W]`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn load_columns<const W: usize, const NV: usize, const C: usize>(
            p: &[f64],
        ) -> Columns<NV, C> {
            assert!(p.len() >= C * W);
            let mut out = [[zero(); NV]; C];
            for (c, o) in out.iter_mut().enumerate() {
                *o = load::<NV>(&p[c * W..]);
            }
            out
        }

        /// Stores C columns into `p[0..C W]`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn store_columns<const W: usize, const NV: usize, const C: usize>(
            p: &mut [f64],
            x: &Columns<NV, C>,
        ) {
            assert!(p.len() >= C * W);
            for (c, xc) in x.iter().enumerate() {
                store::<NV>(&mut p[c * W..], xc);
            }
        }

        impl<const W: usize, const NV: usize> Layer<W, NV> {
            #[inline]
            #[target_feature(enable = $feat)]
            fn new(k: &[f64], b: &[f64], h: f64, adjoint: bool) -> Self {
                let zero = zero();
                Layer {
                    k: matrix::<W, NV>(k, false),
                    kt: if adjoint {
                        matrix::<W, NV>(k, true)
                    } else {
                        [[zero; NV]; W]
                    },
                    b: load::<NV>(b),
                    h: splat(h),
                    gk: [[zero; NV]; W],
                    gb: [zero; NV],
                }
            }

            /// z_c = b + Σ_l K(:, l) u_c(l) for the C columns of `u`, each accumulated in l order
            /// with fused multiply-adds.
            #[inline]
            #[target_feature(enable = $feat)]
            fn pre_activation<const C: usize>(&self, u: &[f64]) -> Columns<NV, C> {
                assert!(u.len() >= C * W);
                let mut z = [self.b; C];
                for (l, col) in self.k.iter().enumerate() {
                    for (c, zc) in z.iter_mut().enumerate() {
                        let ul = splat(u[c * W + l]);
                        for (zv, kv) in zc.iter_mut().zip(col) {
                            *zv = fmadd(*kv, ul, *zv);
                        }
                    }
                }
                z
            }

            /// u⁺ = u + h σ(K u + b) for C columns.
            #[inline]
            #[target_feature(enable = $feat)]
            fn forward<S: Sigma, const C: usize>(&self, u: &[f64]) -> Columns<NV, C> {
                let z = self.pre_activation::<C>(u);
                let mut out = load_columns::<W, NV, C>(u);
                // Loops rather than `array::from_fn` closures: a closure is compiled as a
                // function of its own (one call per column), which keeps the columns' σ
                // evaluations from overlapping.
                for (oc, zc) in out.iter_mut().zip(&z) {
                    for (o, zv) in oc.iter_mut().zip(zc) {
                        *o = fmadd(self.h, value::<S>(*zv), *o);
                    }
                }
                out
            }

            /// σ'(K u + b) for C columns.
            #[inline]
            #[target_feature(enable = $feat)]
            fn derivative<S: Sigma, const C: usize>(&self, u: &[f64]) -> Columns<NV, C> {
                let mut z = self.pre_activation::<C>(u);
                for zc in z.iter_mut() {
                    for zv in zc.iter_mut() {
                        *zv = derivative::<S>(*zv);
                    }
                }
                z
            }

            /// (u + h σ(K u + b), σ'(K u + b)) for C columns: for tanh σ' = 1 − t² from the t of
            /// the step, the bits of [`Layer::forward`] and [`Layer::derivative`].
            #[inline]
            #[target_feature(enable = $feat)]
            fn forward_keeping<S: Sigma, const C: usize>(
                &self,
                u: &[f64],
            ) -> (Columns<NV, C>, Columns<NV, C>) {
                let z = self.pre_activation::<C>(u);
                let mut out = load_columns::<W, NV, C>(u);
                let mut d = [[zero(); NV]; C];
                for ((oc, dc), zc) in out.iter_mut().zip(d.iter_mut()).zip(&z) {
                    for ((o, dv), zv) in oc.iter_mut().zip(dc.iter_mut()).zip(zc) {
                        let t = value::<S>(*zv);
                        *dv = match S::ACT {
                            Activation::Tanh => one_minus_square(t),
                            _ => derivative::<S>(*zv),
                        };
                        *o = fmadd(self.h, t, *o);
                    }
                }
                (out, d)
            }

            /// s_c = (σ'(K u_c + b) · h) ⊙ λ⁺_c for C columns, σ'(K u + b) read from `d` when
            /// kept; with `grad`, gk += s_c u_cᵀ and gb += s_c for c in order.
            #[inline]
            #[target_feature(enable = $feat)]
            fn sensitivity<S: Sigma, const C: usize>(
                &mut self,
                u: &[f64],
                d: Option<&[f64]>,
                lam_next: &[f64],
                grad: bool,
            ) -> Columns<NV, C> {
                let dz = match d {
                    Some(d) => load_columns::<W, NV, C>(d),
                    None => self.derivative::<S, C>(u),
                };
                let mut s = load_columns::<W, NV, C>(lam_next);
                for (sc, dc) in s.iter_mut().zip(&dz) {
                    for (sv, dv) in sc.iter_mut().zip(dc) {
                        *sv = mul(mul(*dv, self.h), *sv);
                    }
                }
                if grad {
                    assert!(u.len() >= C * W);
                    for (l, gcol) in self.gk.iter_mut().enumerate() {
                        let mut ul = [zero(); C];
                        for (c, uc) in ul.iter_mut().enumerate() {
                            *uc = splat(u[c * W + l]);
                        }
                        for (v, g) in gcol.iter_mut().enumerate() {
                            let mut acc = *g;
                            for (sc, uc) in s.iter().zip(&ul) {
                                acc = fmadd(sc[v], *uc, acc);
                            }
                            *g = acc;
                        }
                    }
                    for (v, g) in self.gb.iter_mut().enumerate() {
                        let mut acc = *g;
                        for sc in &s {
                            acc = add(acc, sc[v]);
                        }
                        *g = acc;
                    }
                }
                s
            }

            /// λ_c = λ⁺_c + Σ_r Kᵀ(:, r) s_c(r) for C columns (and the gradient terms with
            /// `grad`).
            #[inline]
            #[target_feature(enable = $feat)]
            fn adjoint<S: Sigma, const C: usize>(
                &mut self,
                u: &[f64],
                d: Option<&[f64]>,
                lam_next: &[f64],
                grad: bool,
            ) -> Columns<NV, C> {
                let s = self.sensitivity::<S, C>(u, d, lam_next, grad);
                let mut sa = [[0.0; W]; C];
                for (sac, sc) in sa.iter_mut().zip(&s) {
                    store::<NV>(sac, sc);
                }
                let mut out = load_columns::<W, NV, C>(lam_next);
                for (r, col) in self.kt.iter().enumerate() {
                    for (oc, sac) in out.iter_mut().zip(&sa) {
                        let sr = splat(sac[r]);
                        for (o, kv) in oc.iter_mut().zip(col) {
                            *o = fmadd(*kv, sr, *o);
                        }
                    }
                }
                out
            }

            /// Adds the accumulated gradient into the caller's blocks.
            #[inline]
            #[target_feature(enable = $feat)]
            fn flush(&self, gk_out: &mut [f64], gb_out: &mut [f64]) {
                for (l, gcol) in self.gk.iter().enumerate() {
                    let out = &mut gk_out[l * W..(l + 1) * W];
                    let mut cur = load::<NV>(out);
                    for (c, g) in cur.iter_mut().zip(gcol) {
                        *c = add(*c, *g);
                    }
                    store::<NV>(out, &cur);
                }
                let mut cur = load::<NV>(gb_out);
                for (c, g) in cur.iter_mut().zip(&self.gb) {
                    *c = add(*c, *g);
                }
                store::<NV>(gb_out, &cur);
            }
        }

        /// The first ⌊n/C⌋ C columns of a W × n block, as a slice to walk in groups of C, and
        /// the remaining columns.
        #[inline]
        fn groups<const W: usize, const C: usize>(x: &[f64]) -> (&[f64], &[f64]) {
            x.split_at(x.len() / (C * W) * (C * W))
        }

        #[inline]
        fn groups_mut<const W: usize, const C: usize>(x: &mut [f64]) -> (&mut [f64], &mut [f64]) {
            let at = x.len() / (C * W) * (C * W);
            x.split_at_mut(at)
        }

        /// Columns j..j+n of a kept derivative, if any.
        #[inline]
        fn columns<const W: usize>(d: Option<&[f64]>, j: usize, n: usize) -> Option<&[f64]> {
            d.map(|d| &d[j * W..(j + n) * W])
        }

        #[target_feature(enable = $feat)]
        pub(super) fn forward<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            u_next: &mut [f64],
        ) {
            let layer = Layer::<W, NV>::new(k, b, h, false);
            let ((u_g, u_r), (n_g, n_r)) = (groups::<W, C>(u), groups_mut::<W, C>(u_next));
            for (un, uj) in n_g.chunks_exact_mut(C * W).zip(u_g.chunks_exact(C * W)) {
                store_columns::<W, NV, C>(un, &layer.forward::<S, C>(uj));
            }
            for (un, uj) in n_r.chunks_exact_mut(W).zip(u_r.chunks_exact(W)) {
                store_columns::<W, NV, 1>(un, &layer.forward::<S, 1>(uj));
            }
        }

        #[target_feature(enable = $feat)]
        pub(super) fn forward_in_place<
            const W: usize,
            const NV: usize,
            const C: usize,
            S: Sigma,
        >(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &mut [f64],
        ) {
            let layer = Layer::<W, NV>::new(k, b, h, false);
            let (u_g, u_r) = groups_mut::<W, C>(u);
            for uj in u_g.chunks_exact_mut(C * W) {
                let out = layer.forward::<S, C>(uj);
                store_columns::<W, NV, C>(uj, &out);
            }
            for uj in u_r.chunks_exact_mut(W) {
                let out = layer.forward::<S, 1>(uj);
                store_columns::<W, NV, 1>(uj, &out);
            }
        }

        /// The forward step out of place, with D = σ'(Z) into `d`.
        #[target_feature(enable = $feat)]
        pub(super) fn forward_keeping<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            u_next: &mut [f64],
            d: &mut [f64],
        ) {
            let layer = Layer::<W, NV>::new(k, b, h, false);
            let ((u_g, u_r), (n_g, n_r)) = (groups::<W, C>(u), groups_mut::<W, C>(u_next));
            let (d_g, d_r) = groups_mut::<W, C>(d);
            let cols = u_g.chunks_exact(C * W).zip(d_g.chunks_exact_mut(C * W));
            for (un, (uj, dj)) in n_g.chunks_exact_mut(C * W).zip(cols) {
                let (out, dv) = layer.forward_keeping::<S, C>(uj);
                store_columns::<W, NV, C>(un, &out);
                store_columns::<W, NV, C>(dj, &dv);
            }
            let cols = u_r.chunks_exact(W).zip(d_r.chunks_exact_mut(W));
            for (un, (uj, dj)) in n_r.chunks_exact_mut(W).zip(cols) {
                let (out, dv) = layer.forward_keeping::<S, 1>(uj);
                store_columns::<W, NV, 1>(un, &out);
                store_columns::<W, NV, 1>(dj, &dv);
            }
        }

        /// The forward step in place, with D = σ'(Z) into `d`.
        #[target_feature(enable = $feat)]
        pub(super) fn forward_in_place_keeping<
            const W: usize,
            const NV: usize,
            const C: usize,
            S: Sigma,
        >(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &mut [f64],
            d: &mut [f64],
        ) {
            let layer = Layer::<W, NV>::new(k, b, h, false);
            let ((u_g, u_r), (d_g, d_r)) = (groups_mut::<W, C>(u), groups_mut::<W, C>(d));
            for (uj, dj) in u_g.chunks_exact_mut(C * W).zip(d_g.chunks_exact_mut(C * W)) {
                let (out, dv) = layer.forward_keeping::<S, C>(uj);
                store_columns::<W, NV, C>(uj, &out);
                store_columns::<W, NV, C>(dj, &dv);
            }
            for (uj, dj) in u_r.chunks_exact_mut(W).zip(d_r.chunks_exact_mut(W)) {
                let (out, dv) = layer.forward_keeping::<S, 1>(uj);
                store_columns::<W, NV, 1>(uj, &out);
                store_columns::<W, NV, 1>(dj, &dv);
            }
        }

        /// D = σ'(K U + b 1ᵀ) into `d`.
        #[target_feature(enable = $feat)]
        pub(super) fn derivatives<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            d: &mut [f64],
        ) {
            let layer = Layer::<W, NV>::new(k, b, h, false);
            let ((u_g, u_r), (d_g, d_r)) = (groups::<W, C>(u), groups_mut::<W, C>(d));
            for (uj, dj) in u_g.chunks_exact(C * W).zip(d_g.chunks_exact_mut(C * W)) {
                store_columns::<W, NV, C>(dj, &layer.derivative::<S, C>(uj));
            }
            for (uj, dj) in u_r.chunks_exact(W).zip(d_r.chunks_exact_mut(W)) {
                store_columns::<W, NV, 1>(dj, &layer.derivative::<S, 1>(uj));
            }
        }

        /// The adjoint step in place: λ⁺ is read from and λ written to `lam` (σ'(Z) from `d`
        /// when kept).
        #[target_feature(enable = $feat)]
        pub(super) fn adjoint<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            d: Option<&[f64]>,
            lam: &mut [f64],
            grad: Option<(&mut [f64], &mut [f64])>,
        ) {
            let mut layer = Layer::<W, NV>::new(k, b, h, true);
            let g = grad.is_some();
            let ((u_g, u_r), (l_g, l_r)) = (groups::<W, C>(u), groups_mut::<W, C>(lam));
            let cols = l_g.chunks_exact_mut(C * W).zip(u_g.chunks_exact(C * W));
            for (i, (lj, uj)) in cols.enumerate() {
                let out = layer.adjoint::<S, C>(uj, columns::<W>(d, i * C, C), lj, g);
                store_columns::<W, NV, C>(lj, &out);
            }
            let first = u_g.len() / W;
            for (i, (lj, uj)) in l_r.chunks_exact_mut(W).zip(u_r.chunks_exact(W)).enumerate() {
                let out = layer.adjoint::<S, 1>(uj, columns::<W>(d, first + i, 1), lj, g);
                store_columns::<W, NV, 1>(lj, &out);
            }
            if let Some((gk, gb)) = grad {
                layer.flush(gk, gb);
            }
        }

        /// The adjoint step out of place: λ⁺ from `lam_next`, λ into `lam_out`.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        pub(super) fn adjoint_from<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            d: Option<&[f64]>,
            lam_next: &[f64],
            lam_out: &mut [f64],
            grad: Option<(&mut [f64], &mut [f64])>,
        ) {
            let mut layer = Layer::<W, NV>::new(k, b, h, true);
            let g = grad.is_some();
            let ((u_g, u_r), (l_g, l_r)) = (groups::<W, C>(u), groups::<W, C>(lam_next));
            let (o_g, o_r) = groups_mut::<W, C>(lam_out);
            let cols = l_g.chunks_exact(C * W).zip(u_g.chunks_exact(C * W));
            for (i, (oj, (lj, uj))) in o_g.chunks_exact_mut(C * W).zip(cols).enumerate() {
                let out = layer.adjoint::<S, C>(uj, columns::<W>(d, i * C, C), lj, g);
                store_columns::<W, NV, C>(oj, &out);
            }
            let first = u_g.len() / W;
            let cols = l_r.chunks_exact(W).zip(u_r.chunks_exact(W));
            for (i, (oj, (lj, uj))) in o_r.chunks_exact_mut(W).zip(cols).enumerate() {
                let out = layer.adjoint::<S, 1>(uj, columns::<W>(d, first + i, 1), lj, g);
                store_columns::<W, NV, 1>(oj, &out);
            }
            if let Some((gk, gb)) = grad {
                layer.flush(gk, gb);
            }
        }

        /// The gradient terms of the adjoint step alone (λ is not updated).
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        pub(super) fn gradient<const W: usize, const NV: usize, const C: usize, S: Sigma>(
            h: f64,
            k: &[f64],
            b: &[f64],
            u: &[f64],
            d: Option<&[f64]>,
            lam_next: &[f64],
            gk: &mut [f64],
            gb: &mut [f64],
        ) {
            let mut layer = Layer::<W, NV>::new(k, b, h, false);
            let ((u_g, u_r), (l_g, l_r)) = (groups::<W, C>(u), groups::<W, C>(lam_next));
            let cols = l_g.chunks_exact(C * W).zip(u_g.chunks_exact(C * W));
            for (i, (lj, uj)) in cols.enumerate() {
                layer.sensitivity::<S, C>(uj, columns::<W>(d, i * C, C), lj, true);
            }
            let first = u_g.len() / W;
            for (i, (lj, uj)) in l_r.chunks_exact(W).zip(u_r.chunks_exact(W)).enumerate() {
                layer.sensitivity::<S, 1>(uj, columns::<W>(d, first + i, 1), lj, true);
            }
            layer.flush(gk, gb);
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA: a column of W values is NV = W/4 vectors of four doubles.
    use super::{Activation, Sigma, SMOOTH_RELU_ETA};
    use crate::activation::tanh4;
    use std::arch::x86_64::*;

    type V = __m256d;
    const LANES: usize = 4;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn zero() -> V {
        _mm256_setzero_pd()
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn splat(x: f64) -> V {
        _mm256_set1_pd(x)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(a: V, b: V) -> V {
        _mm256_add_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul(a: V, b: V) -> V {
        _mm256_mul_pd(a, b)
    }
    /// a b + c, one rounding.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fmadd(a: V, b: V, c: V) -> V {
        _mm256_fmadd_pd(a, b, c)
    }
    /// −a b + c, one rounding.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm256_fnmadd_pd(a, b, c)
    }
    /// # Safety
    /// `p` must be valid for reading four doubles.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn loadu(p: *const f64) -> V {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_pd(p) }
    }
    /// # Safety
    /// `p` must be valid for writing four doubles.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn storeu(p: *mut f64, x: V) {
        // SAFETY: the caller's contract.
        unsafe { _mm256_storeu_pd(p, x) }
    }

    /// σ on four lanes; the same operations, in the same order, as [`Activation::value`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn value<S: Sigma>(x: V) -> V {
        match S::ACT {
            Activation::Relu => _mm256_max_pd(x, _mm256_setzero_pd()),
            Activation::SmoothRelu => {
                let eta = _mm256_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm256_add_pd(_mm256_max_pd(x, _mm256_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let quad =
                    _mm256_mul_pd(_mm256_mul_pd(t, t), _mm256_set1_pd(0.25 / SMOOTH_RELU_ETA));
                _mm256_blendv_pd(quad, x, _mm256_cmp_pd::<_CMP_GE_OQ>(x, eta))
            }
            Activation::Tanh => tanh4(x),
        }
    }

    /// σ' on four lanes; the same operations as [`Activation::derivative`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn derivative<S: Sigma>(x: V) -> V {
        match S::ACT {
            Activation::Relu => _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GT_OQ>(x, _mm256_setzero_pd()),
                _mm256_set1_pd(1.0),
            ),
            Activation::SmoothRelu => {
                let eta = _mm256_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm256_add_pd(_mm256_max_pd(x, _mm256_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let lin = _mm256_mul_pd(t, _mm256_set1_pd(0.5 / SMOOTH_RELU_ETA));
                _mm256_blendv_pd(
                    lin,
                    _mm256_set1_pd(1.0),
                    _mm256_cmp_pd::<_CMP_GE_OQ>(x, eta),
                )
            }
            Activation::Tanh => one_minus_square(tanh4(x)),
        }
    }

    column_kernels!("avx2,fma");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! AVX-512 F: a column of W values is NV = W/8 vectors of eight doubles (w = 8 and 16).
    use super::{Activation, Sigma, SMOOTH_RELU_ETA};
    use crate::activation::tanh8;
    use std::arch::x86_64::*;

    type V = __m512d;
    const LANES: usize = 8;

    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn zero() -> V {
        _mm512_setzero_pd()
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn splat(x: f64) -> V {
        _mm512_set1_pd(x)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn add(a: V, b: V) -> V {
        _mm512_add_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn mul(a: V, b: V) -> V {
        _mm512_mul_pd(a, b)
    }
    /// a b + c, one rounding.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn fmadd(a: V, b: V, c: V) -> V {
        _mm512_fmadd_pd(a, b, c)
    }
    /// −a b + c, one rounding.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm512_fnmadd_pd(a, b, c)
    }
    /// # Safety
    /// `p` must be valid for reading eight doubles.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn loadu(p: *const f64) -> V {
        // SAFETY: the caller's contract.
        unsafe { _mm512_loadu_pd(p) }
    }
    /// # Safety
    /// `p` must be valid for writing eight doubles.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn storeu(p: *mut f64, x: V) {
        // SAFETY: the caller's contract.
        unsafe { _mm512_storeu_pd(p, x) }
    }

    /// σ on eight lanes; the same operations, in the same order, as [`Activation::value`]
    /// (a blend by a mask where AVX2 blends by a vector: the same selection).
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn value<S: Sigma>(x: V) -> V {
        match S::ACT {
            Activation::Relu => _mm512_max_pd(x, _mm512_setzero_pd()),
            Activation::SmoothRelu => {
                let eta = _mm512_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm512_add_pd(_mm512_max_pd(x, _mm512_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let quad =
                    _mm512_mul_pd(_mm512_mul_pd(t, t), _mm512_set1_pd(0.25 / SMOOTH_RELU_ETA));
                _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, eta), quad, x)
            }
            Activation::Tanh => tanh8(x),
        }
    }

    /// σ' on eight lanes; the same operations as [`Activation::derivative`].
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn derivative<S: Sigma>(x: V) -> V {
        match S::ACT {
            Activation::Relu => _mm512_maskz_mov_pd(
                _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, _mm512_setzero_pd()),
                _mm512_set1_pd(1.0),
            ),
            Activation::SmoothRelu => {
                let eta = _mm512_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm512_add_pd(_mm512_max_pd(x, _mm512_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let lin = _mm512_mul_pd(t, _mm512_set1_pd(0.5 / SMOOTH_RELU_ETA));
                _mm512_mask_blend_pd(
                    _mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, eta),
                    lin,
                    _mm512_set1_pd(1.0),
                )
            }
            Activation::Tanh => one_minus_square(tanh8(x)),
        }
    }

    column_kernels!("avx512f,avx2,fma");
}

/// Whether the fused kernels of widths 8 and 16 run their AVX-512 variant (eight lanes a
/// vector) on this CPU; tests can ask for the AVX2 one with [`tests_run_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
fn wide() -> bool {
    #[cfg(test)]
    if AVX2_ONLY.with(|c| c.get()) {
        return false;
    }
    crate::activation::avx512()
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    static AVX2_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the AVX2 variants of the fused kernels on this thread (for tests that
/// compare them with the AVX-512 ones).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn tests_run_avx2<R>(f: impl FnOnce() -> R) -> R {
    AVX2_ONLY.with(|c| c.set(true));
    let r = f();
    AVX2_ONLY.with(|c| c.set(false));
    r
}

/// Calls `$f::<W, W/LANES, C, S>(args)` of the widest variant for the runtime width and
/// activation.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch {
    ($width:expr, $act:expr, $f:ident($($arg:expr),*)) => {{
        macro_rules! with_sigma {
            ($m:ident, $lanes:literal, $w:literal, $c:literal) => {
                // SAFETY: `supported` checked that the CPU has AVX2 and FMA, and `wide` that
                // it has AVX-512 F where the avx512 variant runs.
                unsafe {
                    match $act {
                        Activation::Tanh => $m::$f::<$w, { $w / $lanes }, $c, Tanh>($($arg),*),
                        Activation::Relu => $m::$f::<$w, { $w / $lanes }, $c, Relu>($($arg),*),
                        Activation::SmoothRelu => {
                            $m::$f::<$w, { $w / $lanes }, $c, SmoothRelu>($($arg),*)
                        }
                    }
                }
            };
        }
        // The column group C per width: enough independent FMA chains (C W/LANES vectors)
        // to cover the FMA latency, few enough to keep them in the vector registers (16 with
        // AVX2, 32 with AVX-512). At w = 4 a column's loop is short enough that out-of-order
        // execution overlaps columns by itself, and four columns of tanh spill registers:
        // C = 1 (step bench, kept derivatives with tanh: 0.029 ms at C = 1, 0.034 at C = 4).
        // w = 4 has no AVX-512 variant (a column is half a vector). With AVX-512 a w = 8
        // column is one vector and K takes 8 of the 32 registers: C = 8 (w = 8) and C = 4
        // (w = 16) recompute a tanh step in 0.017 and 0.045 ms against 0.020 and 0.050 at
        // C = 4 and 2 (step bench on Zen 5; the kept-derivative step is the same at both).
        match $width {
            4 => with_sigma!(avx2, 4, 4, 1),
            8 if wide() => with_sigma!(avx512, 8, 8, 8),
            8 => with_sigma!(avx2, 4, 8, 4),
            16 if wide() => with_sigma!(avx512, 8, 16, 4),
            16 => with_sigma!(avx2, 4, 16, 2),
            w => unreachable!("no fused kernel for width {w}"),
        }
    }};
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! dispatch {
    ($width:expr, $act:expr, $f:ident($($arg:expr),*)) => {{
        let _ = ($width, $act, $($arg),*);
        unreachable!("no fused kernels on this architecture")
    }};
}

/// U⁺ = U + h σ(K U + b 1ᵀ) (requires [`supported`]`(width)`).
pub fn forward(step: &DenseStep, u: &[f64], u_next: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward(h, k, b, u, u_next))
}

/// U ← U + h σ(K U + b 1ᵀ) (requires [`supported`]`(width)`).
pub fn forward_in_place(step: &DenseStep, u: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_in_place(h, k, b, u))
}

/// U⁺ = U + h σ(K U + b 1ᵀ) into `u_next` and D = σ'(K U + b 1ᵀ) into `d`: the bits of
/// [`forward`] and [`derivative`] (requires [`supported`]`(width)`).
pub fn forward_keeping(step: &DenseStep, u: &[f64], u_next: &mut [f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_keeping(h, k, b, u, u_next, d))
}

/// U ← U + h σ(K U + b 1ᵀ) and D = σ'(K U + b 1ᵀ) into `d` (in place; as [`forward_keeping`]).
pub fn forward_in_place_keeping(step: &DenseStep, u: &mut [f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_in_place_keeping(h, k, b, u, d))
}

/// D = σ'(K U + b 1ᵀ) into `d`, the derivative the adjoint kernels form (requires
/// [`supported`]`(width)`).
pub fn derivative(step: &DenseStep, u: &[f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, derivatives(h, k, b, u, d))
}

/// λ ← λ + Kᵀ S with S = σ'(K U + b 1ᵀ) ⊙ (h λ), and ∂J/∂K += S Uᵀ, ∂J/∂b += S 1 when `grad`
/// is given; σ'(K U + b 1ᵀ) read from `d` when kept ([`derivative`]), the same bits (requires
/// [`supported`]`(width)`).
pub fn adjoint(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, adjoint(h, k, b, u, d, lam, grad))
}

/// The adjoint step out of place: λ = λ⁺ + Kᵀ S from `lam_next` into `lam_out`, the same bits
/// as [`adjoint`] (requires [`supported`]`(width)`).
pub fn adjoint_from(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam_next: &[f64],
    lam_out: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(
        width,
        act,
        adjoint_from(h, k, b, u, d, lam_next, lam_out, grad)
    )
}

/// ∂J/∂K += S Uᵀ, ∂J/∂b += S 1 with S = σ'(K U + b 1ᵀ) ⊙ (h λ⁺); the same bits as the
/// gradient of [`adjoint`] (requires [`supported`]`(width)`).
pub fn gradient(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam_next: &[f64],
    gk: &mut [f64],
    gb: &mut [f64],
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, gradient(h, k, b, u, d, lam_next, gk, gb))
}
