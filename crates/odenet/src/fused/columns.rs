//! The body of the fused column kernels, expanded once per instruction set by
//! [`column_kernels`] in [`super::avx2`] and [`super::avx512`].

/// The column kernels, written once over a vector type `V` of `LANES` doubles and the
/// vector operations of the module they are expanded in (`zero`, `splat`, `add`, `mul`,
/// `max`, `fmadd`, `fnmadd`, `loadu`, `storeu`, `select_ge`, `positive_one`, `tanh`), every
/// function compiled with the target features `$feat`. The two expansions perform the same
/// operations in the same order on each lane, so they give the same bits.
#[cfg(target_arch = "x86_64")]
macro_rules! column_kernels {
    ($feat:literal) => {
        /// 1 − t² with one rounding ([`crate::activation::tanh_derivative_from`]).
        #[inline]
        #[target_feature(enable = $feat)]
        fn one_minus_square(t: V) -> V {
            fnmadd(t, t, splat(1.0))
        }

        /// σ on every lane; the same operations, in the same order, as [`Activation::value`].
        #[inline]
        #[target_feature(enable = $feat)]
        fn value<S: Sigma>(x: V) -> V {
            match S::ACT {
                Activation::Relu => max(x, zero()),
                Activation::SmoothRelu => {
                    let eta = splat(SMOOTH_RELU_ETA);
                    let t = add(max(x, splat(-SMOOTH_RELU_ETA)), eta);
                    let quad = mul(mul(t, t), splat(0.25 / SMOOTH_RELU_ETA));
                    select_ge(x, eta, x, quad)
                }
                Activation::Tanh => tanh(x),
            }
        }

        /// σ' on every lane; the same operations as [`Activation::derivative`].
        #[inline]
        #[target_feature(enable = $feat)]
        fn derivative<S: Sigma>(x: V) -> V {
            match S::ACT {
                Activation::Relu => positive_one(x),
                Activation::SmoothRelu => {
                    let eta = splat(SMOOTH_RELU_ETA);
                    let t = add(max(x, splat(-SMOOTH_RELU_ETA)), eta);
                    let lin = mul(t, splat(0.5 / SMOOTH_RELU_ETA));
                    select_ge(x, eta, splat(1.0), lin)
                }
                Activation::Tanh => one_minus_square(tanh(x)),
            }
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
