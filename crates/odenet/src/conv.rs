//! Convolutional layers: same-padding, stride-1 2-D convolutions (and the 1-D case), their
//! adjoints, a convolutional hidden step, 2×2 pooling and global average pooling.
//!
//! Layouts: an example is C × H × W row-major (`[channel][row][col]`, the P = H·W pixels of a
//! channel contiguous); a batch is its examples one after another. A kernel is
//! `[out][in][kh][kw]` (as PyTorch), and a layer's control is the kernel followed by the bias
//! (one value per output channel).
//!
//! With padding (p_h, p_w) = ((k_h − 1)/2, (k_w − 1)/2) and X zero outside the image,
//!
//! Z[o][y][x] = b[o] + Σ_{i, d_y, d_x} K[o][i][d_y][d_x] · X[i][y + d_y − p_h][x + d_x − p_w],
//!
//! and for a sensitivity S of Z's shape, with ⟨S, Z⟩ differentiated:
//!
//! * ∂/∂X: (Kᵀ ⋆ S)[i][y][x] = Σ_{o, d_y, d_x} K[o][i][d_y][d_x] · S[o][y − d_y + p_h][x − d_x + p_w],
//!   the same-padding convolution of S with the kernel K̃[i][o][d_y][d_x] =
//!   K[o][i][k_h − 1 − d_y][k_w − 1 − d_x] (flipped in space, channels swapped);
//! * ∂/∂K[o][i][d_y][d_x] = Σ_{examples, y, x} S[o][y][x] · X[i][y + d_y − p_h][x + d_x − p_w];
//! * ∂/∂b[o] = Σ_{examples, y, x} S[o][y][x].
//!
//! The kernels work one example at a time on its image zero-padded to (H + 2p_h) × (W + 2p_w)
//! and flattened row by row, where every tap (i, d_y, d_x) of the kernel is a constant offset
//! (see the `direct` submodule): the convolution and the transposed one (the same loop with
//! K̃) keep a 6-channel × 8-position tile of Z in registers over the whole sum over (i, d_y,
//! d_x); the kernel gradient keeps 4 output channels × 2 taps over the sum over the pixels.
//! This does the work of im2col + GEMM without forming the im2col matrix (9× the image), and
//! without the copies a GEMM library packs its operands into. The padded images, the
//! rearranged kernels and the tap offsets live in the [`Scratch`]; a step never allocates
//! once its scratch has grown.
//!
//! Determinism: each example's Z, Λ and pooled values depend on that example alone (not on the
//! batch it came in), every sum runs in a fixed order with one fused multiply-add per term,
//! and the AVX2 + FMA loops give the same bits as the portable ones; gradients add the
//! examples' contributions in batch order. One thread.

// The formulas above index arrays as X[i][y][x], which rustdoc would read as links.
#![allow(rustdoc::broken_intra_doc_links)]

use crate::activation;
use crate::layer::{ConvParts, Layer, Scratch, Step};
use crate::Activation;

/// Same-padding, stride-1 convolution of images with `in_channels` channels of height × width
/// to `out_channels` channels, kernel kernel_h × kernel_w (odd sizes; zero padding (k − 1)/2
/// each side). The 1-D case is width = 1, kernel_w = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
}

impl Conv2d {
    /// A square convolution: `kernel` × `kernel` on height × width images.
    pub fn square(
        in_channels: usize,
        out_channels: usize,
        height: usize,
        width: usize,
        kernel: usize,
    ) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            height,
            width,
            kernel_h: kernel,
            kernel_w: kernel,
        }
    }

    /// Values of the kernel: out · in · k_h · k_w.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.taps()
    }

    /// Values of the kernel and the bias: weight_len + out.
    pub fn param_len(&self) -> usize {
        self.weight_len() + self.out_channels
    }

    /// Values of one input example: in · H · W.
    pub fn in_len(&self) -> usize {
        self.in_channels * self.pixels()
    }

    /// Values of one output example: out · H · W.
    pub fn out_len(&self) -> usize {
        self.out_channels * self.pixels()
    }

    /// Pixels of one channel, P = H · W.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Kernel taps k_h · k_w.
    pub fn taps(&self) -> usize {
        self.kernel_h * self.kernel_w
    }

    /// Floating-point operations of one forward convolution of `batch` examples (2 per
    /// multiply-add, the bias left out): 2 · out · in · k_h · k_w · H · W · batch.
    pub fn flops(&self, batch: usize) -> f64 {
        2.0 * (self.weight_len() * self.pixels()) as f64 * batch as f64
    }

    /// The sizes of the padded images of one example (see [`direct`]).
    fn geometry(&self) -> Geometry {
        let (ph, pw) = (self.kernel_h / 2, self.kernel_w / 2);
        let (hp, wp) = (self.height + 2 * ph, self.width + 2 * pw);
        let cs = hp * wp;
        let q = self.height * wp;
        let qr = q.div_ceil(direct::QT) * direct::QT;
        let channels = self.in_channels.max(self.out_channels);
        Geometry {
            ph,
            pw,
            wp,
            cs,
            q,
            qr,
            channels,
            padded: channels * cs + qr,
        }
    }

    fn check(&self) {
        assert!(
            self.kernel_h % 2 == 1 && self.kernel_w % 2 == 1,
            "convolution kernels have odd sizes (same padding): {}×{}",
            self.kernel_h,
            self.kernel_w
        );
    }

    /// Examples in a batch of `len` values of `per` values each (checked to divide).
    fn batch(len: usize, per: usize) -> usize {
        assert!(
            per > 0 && len.is_multiple_of(per),
            "a batch of {len} values is not whole examples of {per}"
        );
        len / per
    }

    /// The scratch arrays of this convolution: Z and S of `len` values, the work array
    /// (padded input | padded sensitivity | flat output), the kernels (forward | transposed)
    /// and the tap offsets, filled.
    fn parts<'s>(&self, scratch: &'s mut Scratch, len: usize) -> (Geometry, ConvParts<'s>) {
        self.check();
        let g = self.geometry();
        let work = 2 * g.padded + g.channels * g.qr;
        let taps = g.channels * self.taps();
        let parts = scratch.conv_parts(len, work, 2 * self.weight_len(), taps);
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        for (j, o) in parts.offsets.iter_mut().enumerate() {
            let (c, t) = (j / (kh * kw), j % (kh * kw));
            *o = c * g.cs + (t / kw) * g.wp + t % kw;
        }
        (g, parts)
    }

    /// The kernel K (out × in·taps) [`direct::pack`]ed for the convolution.
    fn forward_kernel(&self, k: &[f64], kf: &mut [f64]) {
        let (co, kc) = (self.out_channels, self.in_channels * self.taps());
        assert!(k.len() >= co * kc, "convolution kernel size");
        direct::pack(co, kc, kf, |o, j| k[o * kc + j]);
    }

    /// The transposed convolution's kernel K̃ (in × out·taps) [`direct::pack`]ed:
    /// K̃[i][o][d_y][d_x] = K[o][i][k_h − 1 − d_y][k_w − 1 − d_x].
    fn transposed_kernel(&self, k: &[f64], kt: &mut [f64]) {
        let (ci, co, taps) = (self.in_channels, self.out_channels, self.taps());
        assert!(k.len() >= ci * co * taps, "convolution kernel size");
        direct::pack(ci, co * taps, kt, |i, j| {
            let (o, t) = (j / taps, j % taps);
            k[(o * ci + i) * taps + taps - 1 - t]
        });
    }

    /// One example of `channels` channels into the padded layout: zero borders, the image,
    /// zeros after the last channel up to `g.padded`.
    fn pad(&self, g: &Geometry, channels: usize, x: &[f64], dst: &mut [f64]) {
        let (h, w) = (self.height, self.width);
        let dst = &mut dst[..g.padded];
        for (c, xc) in x[..channels * h * w].chunks_exact(h * w).enumerate() {
            let d = &mut dst[c * g.cs..(c + 1) * g.cs];
            d[..g.ph * g.wp + g.pw].fill(0.0);
            for (y, row) in xc.chunks_exact(w).enumerate() {
                let start = (g.ph + y) * g.wp + g.pw;
                d[start..start + w].copy_from_slice(row);
                let end = (start + w + 2 * g.pw).min(g.cs);
                d[start + w..end].fill(0.0);
            }
            d[(g.ph + h) * g.wp..].fill(0.0);
        }
        dst[channels * g.cs..].fill(0.0);
    }

    /// The valid positions of a flat output (channel stride `g.qr`) into an image of
    /// `channels` channels: written, or added when `add`.
    fn unflatten(&self, g: &Geometry, channels: usize, flat: &[f64], out: &mut [f64], add: bool) {
        let (h, w) = (self.height, self.width);
        for (c, oc) in out[..channels * h * w].chunks_exact_mut(h * w).enumerate() {
            for (y, row) in oc.chunks_exact_mut(w).enumerate() {
                let src = &flat[c * g.qr + y * g.wp..][..w];
                if add {
                    for (o, v) in row.iter_mut().zip(src) {
                        *o += v;
                    }
                } else {
                    row.copy_from_slice(src);
                }
            }
        }
    }

    /// Z = K ∗ X + b for one example, `xpad` left holding X padded.
    #[allow(clippy::too_many_arguments)]
    fn forward_example(
        &self,
        g: &Geometry,
        kf: &[f64],
        off: &[usize],
        b: &[f64],
        x: &[f64],
        z: &mut [f64],
        xpad: &mut [f64],
        flat: &mut [f64],
    ) {
        self.pad(g, self.in_channels, x, xpad);
        let taps = self.in_channels * self.taps();
        let co = self.out_channels;
        direct::direct(kf, co, &off[..taps], xpad, Some(&b[..co]), flat, g.qr, g.qr);
        self.unflatten(g, co, flat, z, false);
    }

    /// dX += Kᵀ ⋆ S for one example, S already padded in `spad`.
    fn backward_input_example(
        &self,
        g: &Geometry,
        kt: &[f64],
        off: &[usize],
        spad: &[f64],
        dx: &mut [f64],
        flat: &mut [f64],
    ) {
        let taps = self.out_channels * self.taps();
        let ci = self.in_channels;
        direct::direct(kt, ci, &off[..taps], spad, None, flat, g.qr, g.qr);
        self.unflatten(g, ci, flat, dx, true);
    }

    /// ∂/∂K += S ⋆ X, ∂/∂b += Σ S for one example: X padded in `xpad`, S padded in `spad` and
    /// compact in `s`.
    #[allow(clippy::too_many_arguments)]
    fn params_example(
        &self,
        g: &Geometry,
        off: &[usize],
        xpad: &[f64],
        spad: &[f64],
        s: &[f64],
        gk: &mut [f64],
        gb: &mut [f64],
    ) {
        let taps = self.in_channels * self.taps();
        // S at output position q = y · Wp + x is spad[o · Cs + (y + p_h) · Wp + x + p_w].
        let s0 = &spad[g.ph * g.wp + g.pw..];
        direct::params(s0, g.cs, self.out_channels, &off[..taps], xpad, g.q, gk);
        let p = self.pixels();
        for (gbo, so) in gb[..self.out_channels].iter_mut().zip(s.chunks_exact(p)) {
            *gbo += so.iter().sum::<f64>();
        }
    }

    /// Grows `scratch` to everything this convolution's kernels and a step of it use, so that
    /// not even the first call allocates (they grow it themselves otherwise).
    pub fn reserve(&self, scratch: &mut Scratch) {
        self.parts(scratch, self.in_len().max(self.out_len()));
    }

    /// Z = K ∗ X + b (overwrites z). x: batch · in_len, z: batch · out_len.
    pub fn forward(&self, k: &[f64], b: &[f64], x: &[f64], z: &mut [f64], scratch: &mut Scratch) {
        let batch = Self::batch(x.len(), self.in_len());
        assert_eq!(z.len(), batch * self.out_len(), "convolution output size");
        let (g, p) = self.parts(scratch, 0);
        let (kf, _) = p.kernel.split_at_mut(self.weight_len());
        self.forward_kernel(k, kf);
        let (xpad, rest) = p.work.split_at_mut(g.padded);
        let flat = &mut rest[g.padded..];
        for (xe, ze) in x
            .chunks_exact(self.in_len())
            .zip(z.chunks_exact_mut(self.out_len()))
        {
            self.forward_example(&g, kf, p.offsets, b, xe, ze, xpad, flat);
        }
    }

    /// dX += Kᵀ ⋆ S, the transposed convolution (adds into dx). s: batch · out_len, dx: batch
    /// · in_len.
    pub fn backward_input(&self, k: &[f64], s: &[f64], dx: &mut [f64], scratch: &mut Scratch) {
        let batch = Self::batch(s.len(), self.out_len());
        assert_eq!(dx.len(), batch * self.in_len(), "convolution input size");
        let (g, p) = self.parts(scratch, 0);
        let (_, kt) = p.kernel.split_at_mut(self.weight_len());
        self.transposed_kernel(k, kt);
        let (_, rest) = p.work.split_at_mut(g.padded);
        let (spad, flat) = rest.split_at_mut(g.padded);
        for (se, dxe) in s
            .chunks_exact(self.out_len())
            .zip(dx.chunks_exact_mut(self.in_len()))
        {
            self.pad(&g, self.out_channels, se, spad);
            self.backward_input_example(&g, kt, p.offsets, spad, dxe, flat);
        }
    }

    /// ∂/∂K += S ⋆ X, ∂/∂b += Σ S over the batch and the pixels (adds into gk, gb).
    pub fn backward_params(
        &self,
        x: &[f64],
        s: &[f64],
        gk: &mut [f64],
        gb: &mut [f64],
        scratch: &mut Scratch,
    ) {
        let batch = Self::batch(x.len(), self.in_len());
        assert_eq!(
            s.len(),
            batch * self.out_len(),
            "convolution sensitivity size"
        );
        let (g, p) = self.parts(scratch, 0);
        let (xpad, rest) = p.work.split_at_mut(g.padded);
        let (spad, _) = rest.split_at_mut(g.padded);
        for (xe, se) in x
            .chunks_exact(self.in_len())
            .zip(s.chunks_exact(self.out_len()))
        {
            self.pad(&g, self.in_channels, xe, xpad);
            self.pad(&g, self.out_channels, se, spad);
            self.params_example(&g, p.offsets, xpad, spad, se, gk, gb);
        }
    }
}

/// The padded layout of one example of a [`Conv2d`] (see [`direct`]).
#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// Padding (k_h − 1)/2, (k_w − 1)/2.
    ph: usize,
    pw: usize,
    /// Padded row length W + 2p_w.
    wp: usize,
    /// Channel stride of a padded image, (H + 2p_h) · Wp.
    cs: usize,
    /// Flat output positions H · Wp, and rounded up to whole tiles (the channel stride of a
    /// flat output).
    q: usize,
    qr: usize,
    /// The larger channel count, and the length of a padded image of that many channels.
    channels: usize,
    padded: usize,
}

/// A convolutional hidden layer: c channels of H × W, kernel k_h × k_w; θ_n = (K_n
/// `[c][c][k_h][k_w]`, b_n `[c]`), and the step U ↦ U + h σ(K_n ∗ U + b_n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    /// The convolution, with in_channels == out_channels.
    pub conv: Conv2d,
}

impl Conv {
    /// c channels of height × width, a square kernel × kernel.
    pub fn new(channels: usize, height: usize, width: usize, kernel: usize) -> Self {
        Conv {
            conv: Conv2d::square(channels, channels, height, width, kernel),
        }
    }
}

/// A convolutional step's linearization point: Φ(U) = U + h σ(K ∗ U + b).
#[derive(Clone, Copy, Debug)]
pub struct ConvStep<'a> {
    pub act: Activation,
    /// Step size h.
    pub h: f64,
    pub conv: Conv2d,
    /// K, `[c][c][k_h][k_w]`.
    pub k: &'a [f64],
    /// b, length c.
    pub b: &'a [f64],
}

impl Layer for Conv {
    type Step<'a> = ConvStep<'a>;

    fn state_len(&self) -> usize {
        self.conv.in_len()
    }

    fn param_len(&self) -> usize {
        self.conv.param_len()
    }

    fn linearize<'a>(&self, act: Activation, h: f64, theta: &'a [f64]) -> ConvStep<'a> {
        assert_eq!(
            self.conv.in_channels, self.conv.out_channels,
            "a convolutional hidden layer keeps its channels"
        );
        let (k, b) = theta.split_at(self.conv.weight_len());
        ConvStep {
            act,
            h,
            conv: self.conv,
            k,
            b: &b[..self.conv.out_channels],
        }
    }

    /// Four convolutions: the forward step's, and in the adjoint the recomputed
    /// pre-activation, the transposed convolution and the kernel gradient: 4 · flops(B).
    fn step_flops(&self, batch: usize) -> f64 {
        4.0 * self.conv.flops(batch)
    }
}

/// The arrays of one convolution call, split out of its [`Scratch`].
struct Arrays<'s> {
    g: Geometry,
    kf: &'s [f64],
    kt: &'s [f64],
    off: &'s [usize],
    z: &'s mut [f64],
    s: &'s mut [f64],
    xpad: &'s mut [f64],
    spad: &'s mut [f64],
    flat: &'s mut [f64],
}

impl ConvStep<'_> {
    /// The scratch arrays for a batch `u` with the forward kernel, and the transposed one
    /// when `transposed`.
    fn arrays<'s>(&self, u: &[f64], scratch: &'s mut Scratch, transposed: bool) -> Arrays<'s> {
        let c = &self.conv;
        let n = c.in_len();
        Conv2d::batch(u.len(), n);
        let (g, p) = c.parts(scratch, n);
        let (kf, kt) = p.kernel.split_at_mut(c.weight_len());
        c.forward_kernel(self.k, kf);
        if transposed {
            c.transposed_kernel(self.k, kt);
        }
        let (xpad, rest) = p.work.split_at_mut(g.padded);
        let (spad, flat) = rest.split_at_mut(g.padded);
        Arrays {
            g,
            kf,
            kt,
            off: p.offsets,
            z: p.z,
            s: p.s,
            xpad,
            spad,
            flat,
        }
    }

    /// Z = K ∗ U + b for one example into `a.z` (U padded left in `a.xpad`).
    fn pre_activation(&self, a: &mut Arrays<'_>, ue: &[f64]) {
        let c = &self.conv;
        c.forward_example(&a.g, a.kf, a.off, self.b, ue, a.z, a.xpad, a.flat);
    }

    /// One example's Z, S = σ'(Z) ⊙ (h Λ⁺) (into `a.s`, padded into `a.spad`) and gradient
    /// when asked.
    /// With D = σ'(Z) of the example given (`de`), Z is not formed: U is padded into
    /// `a.xpad` alone and S = D ⊙ (h Λ⁺), the same bits.
    fn sensitivity(
        &self,
        a: &mut Arrays<'_>,
        ue: &[f64],
        de: Option<&[f64]>,
        le: &[f64],
        grad: &mut Option<(&mut [f64], &mut [f64])>,
    ) {
        let c = &self.conv;
        match de {
            None => {
                self.pre_activation(a, ue);
                activation::sensitivity(self.act, self.h, a.z, le, a.s);
            }
            Some(de) => {
                if grad.is_some() {
                    c.pad(&a.g, c.in_channels, ue, a.xpad);
                }
                activation::sensitivity_from_derivative(self.h, de, le, a.s);
            }
        }
        c.pad(&a.g, c.out_channels, a.s, a.spad);
        if let Some((gk, gb)) = grad.as_mut() {
            c.params_example(&a.g, a.off, a.xpad, a.spad, a.s, gk, gb);
        }
    }

    /// Λ⁺ ↦ Λ in place in `lam` (σ'(Z) from `d` when kept), the gradient added into `grad`
    /// when given.
    fn adjoint_in_place(
        &self,
        u: &[f64],
        d: Option<&[f64]>,
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        let c = &self.conv;
        let n = c.in_len();
        assert_eq!(lam.len(), u.len(), "adjoint size");
        let mut a = self.arrays(u, scratch, true);
        let mut grad = split_grad(c, grad);
        for (j, (ue, le)) in u.chunks_exact(n).zip(lam.chunks_exact_mut(n)).enumerate() {
            let de = d.map(|d| &d[j * n..(j + 1) * n]);
            self.sensitivity(&mut a, ue, de, le, &mut grad);
            c.backward_input_example(&a.g, a.kt, a.off, a.spad, le, a.flat);
        }
    }

    /// The gradient terms alone (σ'(Z) from `d` when kept).
    fn gradient_terms(
        &self,
        u: &[f64],
        d: Option<&[f64]>,
        lam_next: &[f64],
        scratch: &mut Scratch,
        grad: &mut [f64],
    ) {
        let n = self.conv.in_len();
        assert_eq!(lam_next.len(), u.len(), "adjoint size");
        let mut a = self.arrays(u, scratch, false);
        let mut grad = split_grad(&self.conv, Some(grad));
        for (j, (ue, le)) in u.chunks_exact(n).zip(lam_next.chunks_exact(n)).enumerate() {
            let de = d.map(|d| &d[j * n..(j + 1) * n]);
            self.sensitivity(&mut a, ue, de, le, &mut grad);
        }
    }
}

/// The gradient block split into (∂J/∂K, ∂J/∂b).
fn split_grad<'g>(
    c: &Conv2d,
    grad: Option<&'g mut [f64]>,
) -> Option<(&'g mut [f64], &'g mut [f64])> {
    grad.map(|g| {
        let (gk, gb) = g.split_at_mut(c.weight_len());
        (gk, &mut gb[..c.out_channels])
    })
}

impl Step for ConvStep<'_> {
    fn forward(&self, u: &[f64], u_next: &mut [f64], scratch: &mut Scratch) {
        let n = self.conv.in_len();
        assert_eq!(u_next.len(), u.len(), "forward size");
        let mut a = self.arrays(u, scratch, false);
        for (ue, ne) in u.chunks_exact(n).zip(u_next.chunks_exact_mut(n)) {
            self.pre_activation(&mut a, ue);
            activation::forward(self.act, self.h, a.z, ue, ne);
        }
    }

    fn forward_in_place(&self, u: &mut [f64], scratch: &mut Scratch) {
        let n = self.conv.in_len();
        let mut a = self.arrays(u, scratch, false);
        for ue in u.chunks_exact_mut(n) {
            self.pre_activation(&mut a, ue);
            activation::forward_in_place(self.act, self.h, a.z, ue);
        }
    }

    /// Λ = Λ⁺ + Kᵀ ⋆ S with S = σ'(K ∗ U + b) ⊙ (h Λ⁺); ∂J/∂K += S ⋆ U, ∂J/∂b += Σ S.
    fn adjoint(&self, u: &[f64], lam: &mut [f64], scratch: &mut Scratch, grad: Option<&mut [f64]>) {
        self.adjoint_in_place(u, None, lam, scratch, grad);
    }

    fn adjoint_from(
        &self,
        u: &[f64],
        lam_next: &[f64],
        lam_out: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        lam_out.copy_from_slice(lam_next);
        self.adjoint_in_place(u, None, lam_out, scratch, grad);
    }

    fn gradient(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch, grad: &mut [f64]) {
        self.gradient_terms(u, None, lam_next, scratch, grad);
    }

    fn increment_dot(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch) -> f64 {
        let n = self.conv.in_len();
        let mut a = self.arrays(u, scratch, false);
        let mut sum = 0.0;
        for (ue, le) in u.chunks_exact(n).zip(lam_next.chunks_exact(n)) {
            self.pre_activation(&mut a, ue);
            activation::apply(self.act, a.z, a.s);
            for (&si, &li) in a.s.iter().zip(le) {
                sum += li * si;
            }
        }
        sum
    }

    fn forward_keeping(&self, u: &[f64], u_next: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        let n = self.conv.in_len();
        assert_eq!(u_next.len(), u.len(), "forward size");
        let mut a = self.arrays(u, scratch, false);
        let cols = u_next.chunks_exact_mut(n).zip(d.chunks_exact_mut(n));
        for (ue, (ne, de)) in u.chunks_exact(n).zip(cols) {
            self.pre_activation(&mut a, ue);
            activation::forward_keeping_derivative(self.act, self.h, a.z, ue, ne, de);
        }
    }

    fn forward_in_place_keeping(&self, u: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        let n = self.conv.in_len();
        let mut a = self.arrays(u, scratch, false);
        for (ue, de) in u.chunks_exact_mut(n).zip(d.chunks_exact_mut(n)) {
            self.pre_activation(&mut a, ue);
            activation::forward_in_place_keeping_derivative(self.act, self.h, a.z, ue, de);
        }
    }

    fn derivative(&self, u: &[f64], d: &mut [f64], scratch: &mut Scratch) {
        let n = self.conv.in_len();
        let mut a = self.arrays(u, scratch, false);
        for (ue, de) in u.chunks_exact(n).zip(d.chunks_exact_mut(n)) {
            self.pre_activation(&mut a, ue);
            activation::apply_derivative(self.act, a.z, de);
        }
    }

    fn adjoint_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: Option<&[f64]>,
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        if let Some(next) = lam_next {
            lam.copy_from_slice(next);
        }
        self.adjoint_in_place(u, Some(d), lam, scratch, grad);
    }

    fn gradient_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: &[f64],
        scratch: &mut Scratch,
        grad: &mut [f64],
    ) {
        self.gradient_terms(u, Some(d), lam_next, scratch, grad);
    }
}

mod pool;
pub use pool::{
    global_average, global_average_adjoint, pool_adjoint, pool_forward, pool_window, pooled_size,
    Pool,
};

mod direct;

#[cfg(test)]
mod tests;
