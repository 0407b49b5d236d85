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
//! The kernels run im2col + GEMM one example at a time: the im2col matrix of an example has
//! one row per (channel, d_y, d_x) and one column per pixel,
//! col[(i·k_h + d_y)·k_w + d_x][y·W + x] = X[i][y + d_y − p_h][x + d_x − p_w] (0 off the image),
//! so Z = K · col + b 1ᵀ (K as the c_out × c_in·k_h·k_w matrix it is stored as), ∂/∂K += S colᵀ
//! and Kᵀ ⋆ S = K̃ · col(S). The im2col matrix and K̃ live in the [`Scratch`]; a step never
//! allocates once its scratch has grown. Everything runs on one thread in a fixed order, so the
//! results depend only on the inputs.

use crate::activation;
use crate::layer::{Layer, Scratch, Step};
use crate::linalg::gemm;
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

    /// Values of the im2col buffer: one example's matrix, of the input (forward, parameter
    /// gradient) or of the output (transposed convolution), whichever is larger.
    fn col_len(&self) -> usize {
        self.in_channels.max(self.out_channels) * self.taps() * self.pixels()
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
            per > 0 && len % per == 0,
            "a batch of {len} values is not whole examples of {per}"
        );
        len / per
    }

    /// Z = K ∗ X + b (overwrites z). x: batch · in_len, z: batch · out_len.
    pub fn forward(&self, k: &[f64], b: &[f64], x: &[f64], z: &mut [f64], scratch: &mut Scratch) {
        self.check();
        let batch = Self::batch(x.len(), self.in_len());
        assert_eq!(z.len(), batch * self.out_len(), "convolution output size");
        let (_, _, col, _) = scratch.conv_parts(0, self.col_len(), 0);
        for (xe, ze) in x
            .chunks_exact(self.in_len())
            .zip(z.chunks_exact_mut(self.out_len()))
        {
            self.forward_example(k, b, xe, ze, col);
        }
    }

    /// dX += Kᵀ ⋆ S, the transposed convolution (adds into dx). s: batch · out_len, dx: batch
    /// · in_len.
    pub fn backward_input(&self, k: &[f64], s: &[f64], dx: &mut [f64], scratch: &mut Scratch) {
        self.check();
        let batch = Self::batch(s.len(), self.out_len());
        assert_eq!(dx.len(), batch * self.in_len(), "convolution input size");
        let (_, _, col, kt) = scratch.conv_parts(0, self.col_len(), self.weight_len());
        self.transposed_kernel(k, kt);
        for (se, dxe) in s
            .chunks_exact(self.out_len())
            .zip(dx.chunks_exact_mut(self.in_len()))
        {
            self.backward_input_example(kt, se, dxe, col);
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
        self.check();
        let batch = Self::batch(x.len(), self.in_len());
        assert_eq!(
            s.len(),
            batch * self.out_len(),
            "convolution sensitivity size"
        );
        let (_, _, col, _) = scratch.conv_parts(0, self.col_len(), 0);
        for (xe, se) in x
            .chunks_exact(self.in_len())
            .zip(s.chunks_exact(self.out_len()))
        {
            self.im2col(self.in_channels, xe, col);
            self.params_example(col, se, gk, gb);
        }
    }

    /// The im2col matrix of one example of `channels` channels into `col`
    /// (channels · k_h · k_w rows of P values).
    fn im2col(&self, channels: usize, x: &[f64], col: &mut [f64]) {
        let (h, w) = (self.height, self.width);
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        let (ph, pw) = (kh / 2, kw / 2);
        let p = h * w;
        let mut rows = col[..channels * kh * kw * p].chunks_exact_mut(p);
        for xc in x[..channels * p].chunks_exact(p) {
            for dy in 0..kh {
                for dx in 0..kw {
                    let row = rows.next().expect("im2col rows");
                    // Output columns x ∈ [x0, x1) read input column x + dx − pw ∈ [0, w).
                    let x0 = pw.saturating_sub(dx).min(w);
                    let x1 = (w + pw).saturating_sub(dx).min(w).max(x0);
                    for (y, out) in row.chunks_exact_mut(w).enumerate() {
                        let sy = y + dy;
                        if sy < ph || sy - ph >= h {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &xc[(sy - ph) * w..(sy - ph + 1) * w];
                        out[..x0].fill(0.0);
                        out[x1..].fill(0.0);
                        out[x0..x1].copy_from_slice(&src[x0 + dx - pw..x1 + dx - pw]);
                    }
                }
            }
        }
    }

    /// K̃[i][o][d_y][d_x] = K[o][i][k_h − 1 − d_y][k_w − 1 − d_x] into `kt`.
    fn transposed_kernel(&self, k: &[f64], kt: &mut [f64]) {
        let (ci, co) = (self.in_channels, self.out_channels);
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        let taps = kh * kw;
        assert!(k.len() >= ci * co * taps, "convolution kernel size");
        for o in 0..co {
            for i in 0..ci {
                let src = &k[(o * ci + i) * taps..][..taps];
                let dst = &mut kt[(i * co + o) * taps..][..taps];
                for (t, d) in dst.iter_mut().enumerate() {
                    *d = src[taps - 1 - t];
                }
            }
        }
    }

    /// Z = K · col(X) + b 1ᵀ for one example (col left holding col(X)).
    fn forward_example(&self, k: &[f64], b: &[f64], x: &[f64], z: &mut [f64], col: &mut [f64]) {
        let p = self.pixels();
        self.im2col(self.in_channels, x, col);
        for (zo, &bo) in z.chunks_exact_mut(p).zip(&b[..self.out_channels]) {
            zo.fill(bo);
        }
        // Column-major: Zᵀ (P × out) += col(X)ᵀ (P × in·taps) · Kᵀ (in·taps × out).
        let kc = self.in_channels * self.taps();
        gemm(p, kc, self.out_channels, 1.0, col, false, k, false, 1.0, z);
    }

    /// dX += K̃ · col(S) for one example (`kt` from [`Conv2d::transposed_kernel`]).
    fn backward_input_example(&self, kt: &[f64], s: &[f64], dx: &mut [f64], col: &mut [f64]) {
        let p = self.pixels();
        self.im2col(self.out_channels, s, col);
        let kc = self.out_channels * self.taps();
        gemm(p, kc, self.in_channels, 1.0, col, false, kt, false, 1.0, dx);
    }

    /// ∂/∂K += S col(X)ᵀ, ∂/∂b += S 1 for one example, col holding col(X).
    fn params_example(&self, col: &[f64], s: &[f64], gk: &mut [f64], gb: &mut [f64]) {
        let p = self.pixels();
        let kc = self.in_channels * self.taps();
        // Column-major: G (in·taps × out), G(kc, o) = gK[o][kc], += col(X) (in·taps × P) · Sᵀ.
        gemm(kc, p, self.out_channels, 1.0, col, true, s, false, 1.0, gk);
        for (g, so) in gb[..self.out_channels].iter_mut().zip(s.chunks_exact(p)) {
            *g += so.iter().sum::<f64>();
        }
    }
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

    fn linearize<'a>(&'a self, act: Activation, h: f64, theta: &'a [f64]) -> ConvStep<'a> {
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

impl ConvStep<'_> {
    /// The per-example loop of the adjoint: Z, S = σ'(Z) ⊙ (h Λ⁺), the gradient when asked,
    /// and Λ += Kᵀ ⋆ S when `update` (Λ⁺ read from and Λ written to `lam`).
    fn adjoint_loop(
        &self,
        u: &[f64],
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
        update: bool,
    ) {
        let c = &self.conv;
        c.check();
        let n = c.in_len();
        let batch = Conv2d::batch(u.len(), n);
        assert_eq!(lam.len(), batch * n, "adjoint size");
        let (z, s, col, kt) = scratch.conv_parts(n, c.col_len(), c.weight_len());
        if update {
            c.transposed_kernel(self.k, kt);
        }
        let mut grad = grad.map(|g| {
            let (gk, gb) = g.split_at_mut(c.weight_len());
            (gk, &mut gb[..c.out_channels])
        });
        for (ue, le) in u.chunks_exact(n).zip(lam.chunks_exact_mut(n)) {
            c.forward_example(self.k, self.b, ue, z, col);
            activation::sensitivity(self.act, self.h, z, le, s);
            if let Some((gk, gb)) = grad.as_mut() {
                c.params_example(col, s, gk, gb);
            }
            if update {
                c.backward_input_example(kt, s, le, col);
            }
        }
    }
}

impl Step for ConvStep<'_> {
    fn forward(&self, u: &[f64], u_next: &mut [f64], scratch: &mut Scratch) {
        let c = &self.conv;
        c.check();
        let n = c.in_len();
        Conv2d::batch(u.len(), n);
        assert_eq!(u_next.len(), u.len(), "forward size");
        let (z, _, col, _) = scratch.conv_parts(n, c.col_len(), 0);
        for (ue, ne) in u.chunks_exact(n).zip(u_next.chunks_exact_mut(n)) {
            c.forward_example(self.k, self.b, ue, z, col);
            activation::forward(self.act, self.h, z, ue, ne);
        }
    }

    fn forward_in_place(&self, u: &mut [f64], scratch: &mut Scratch) {
        let c = &self.conv;
        c.check();
        let n = c.in_len();
        Conv2d::batch(u.len(), n);
        let (z, _, col, _) = scratch.conv_parts(n, c.col_len(), 0);
        for ue in u.chunks_exact_mut(n) {
            c.forward_example(self.k, self.b, ue, z, col);
            activation::forward_in_place(self.act, self.h, z, ue);
        }
    }

    /// Λ = Λ⁺ + Kᵀ ⋆ S with S = σ'(K ∗ U + b) ⊙ (h Λ⁺); ∂J/∂K += S ⋆ U, ∂J/∂b += Σ S.
    fn adjoint(&self, u: &[f64], lam: &mut [f64], scratch: &mut Scratch, grad: Option<&mut [f64]>) {
        self.adjoint_loop(u, lam, scratch, grad, true);
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
        self.adjoint_loop(u, lam_out, scratch, grad, true);
    }

    fn gradient(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch, grad: &mut [f64]) {
        let c = &self.conv;
        c.check();
        let n = c.in_len();
        let batch = Conv2d::batch(u.len(), n);
        assert_eq!(lam_next.len(), batch * n, "adjoint size");
        let (z, s, col, _) = scratch.conv_parts(n, c.col_len(), 0);
        let (gk, gb) = grad.split_at_mut(c.weight_len());
        for (ue, le) in u.chunks_exact(n).zip(lam_next.chunks_exact(n)) {
            c.forward_example(self.k, self.b, ue, z, col);
            activation::sensitivity(self.act, self.h, z, le, s);
            c.params_example(col, s, gk, gb);
        }
    }

    fn increment_dot(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch) -> f64 {
        let c = &self.conv;
        c.check();
        let n = c.in_len();
        Conv2d::batch(u.len(), n);
        let (z, s, col, _) = scratch.conv_parts(n, c.col_len(), 0);
        let mut sum = 0.0;
        for (ue, le) in u.chunks_exact(n).zip(lam_next.chunks_exact(n)) {
            c.forward_example(self.k, self.b, ue, z, col);
            activation::apply(self.act, z, s);
            for (&si, &li) in s.iter().zip(le) {
                sum += li * si;
            }
        }
        sum
    }
}

/// The kind of a 2×2 pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The mean of each window.
    Average,
    /// The largest value of each window.
    Max,
}

impl std::str::FromStr for Pool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "average" => Ok(Pool::Average),
            "max" => Ok(Pool::Max),
            _ => Err(format!(
                "unknown pooling \"{s}\" (expected \"average\" or \"max\")"
            )),
        }
    }
}

/// The window of a pooling of height × width images, (rows, columns): 2×2, or 2×1 for the
/// 1-D case width = 1.
pub fn pool_window(width: usize) -> (usize, usize) {
    (2, if width == 1 { 1 } else { 2 })
}

/// The size of a pooled image, (height / 2, width / 2), or (height / 2, 1) for width = 1
/// (odd sizes: the last row or column is dropped).
pub fn pooled_size(height: usize, width: usize) -> (usize, usize) {
    let (wh, ww) = pool_window(width);
    (height / wh, width / ww)
}

/// Checks the sizes of a pooling and returns (batch, pooled height, pooled width).
fn pool_sizes(
    channels: usize,
    height: usize,
    width: usize,
    x: usize,
    y: usize,
) -> (usize, usize, usize) {
    let per = channels * height * width;
    let batch = Conv2d::batch(x, per);
    let (ho, wo) = pooled_size(height, width);
    assert_eq!(y, batch * channels * ho * wo, "pooled size");
    (batch, ho, wo)
}

/// 2×2 pooling, stride 2, of `channels` channels of height × width (odd sizes: the last row or
/// column is dropped, as PyTorch does): y has channels · (height / 2) · (width / 2) values per
/// example. For the 1-D case (width = 1) the window is 2×1 (pairs of rows), y has channels ·
/// (height / 2) values per example. Average: y = the mean of the window (its values summed in
/// row-major order, times 1/4, or 1/2 for 2×1); max: its largest value.
pub fn pool_forward(
    kind: Pool,
    channels: usize,
    height: usize,
    width: usize,
    x: &[f64],
    y: &mut [f64],
) {
    let (batch, ho, wo) = pool_sizes(channels, height, width, x.len(), y.len());
    let (wh, ww) = pool_window(width);
    let scale = 1.0 / (wh * ww) as f64;
    let (p, q) = (height * width, ho * wo);
    for (xc, yc) in x
        .chunks_exact(p)
        .zip(y.chunks_exact_mut(q))
        .take(batch * channels)
    {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = match kind {
                    Pool::Average => 0.0,
                    Pool::Max => f64::NEG_INFINITY,
                };
                for r in 0..wh {
                    for s in 0..ww {
                        let v = xc[(wh * oy + r) * width + ww * ox + s];
                        match kind {
                            Pool::Average => acc += v,
                            Pool::Max => {
                                if v > acc {
                                    acc = v
                                }
                            }
                        }
                    }
                }
                yc[oy * wo + ox] = match kind {
                    Pool::Average => acc * scale,
                    Pool::Max => acc,
                };
            }
        }
    }
}

/// gx += the adjoint of [`pool_forward`] applied to gy: average spreads gy/4 (gy/2 for 2×1)
/// over its window; max gives all of a window's gradient to its first maximum in row-major
/// order (ties broken that way, so the result is deterministic). Dropped rows and columns
/// get nothing.
pub fn pool_adjoint(
    kind: Pool,
    channels: usize,
    height: usize,
    width: usize,
    x: &[f64],
    gy: &[f64],
    gx: &mut [f64],
) {
    let (batch, ho, wo) = pool_sizes(channels, height, width, x.len(), gy.len());
    assert_eq!(gx.len(), x.len(), "pooling gradient size");
    let (wh, ww) = pool_window(width);
    let scale = 1.0 / (wh * ww) as f64;
    let (p, q) = (height * width, ho * wo);
    for ((xc, gyc), gxc) in x
        .chunks_exact(p)
        .zip(gy.chunks_exact(q))
        .zip(gx.chunks_exact_mut(p))
        .take(batch * channels)
    {
        for oy in 0..ho {
            for ox in 0..wo {
                let g = gyc[oy * wo + ox];
                let at = |r: usize, s: usize| (wh * oy + r) * width + ww * ox + s;
                match kind {
                    Pool::Average => {
                        for r in 0..wh {
                            for s in 0..ww {
                                gxc[at(r, s)] += g * scale;
                            }
                        }
                    }
                    Pool::Max => {
                        let mut best = at(0, 0);
                        for r in 0..wh {
                            for s in 0..ww {
                                if xc[at(r, s)] > xc[best] {
                                    best = at(r, s);
                                }
                            }
                        }
                        gxc[best] += g;
                    }
                }
            }
        }
    }
}

/// Global average pooling: y[c] = (1/P) Σ_p x[c][p], the mean over the `pixels` values of
/// each channel, per example (x: batch · channels · pixels, y: batch · channels).
pub fn global_average(channels: usize, pixels: usize, x: &[f64], y: &mut [f64]) {
    let batch = Conv2d::batch(x.len(), channels * pixels);
    assert_eq!(y.len(), batch * channels, "global average size");
    let scale = 1.0 / pixels as f64;
    for (xc, yc) in x.chunks_exact(pixels).zip(y.iter_mut()) {
        *yc = xc.iter().sum::<f64>() * scale;
    }
}

/// The adjoint of [`global_average`]: gx[c][p] += gy[c] / P, per example.
pub fn global_average_adjoint(channels: usize, pixels: usize, gy: &[f64], gx: &mut [f64]) {
    let batch = Conv2d::batch(gx.len(), channels * pixels);
    assert_eq!(gy.len(), batch * channels, "global average size");
    let scale = 1.0 / pixels as f64;
    for (gxc, &g) in gx.chunks_exact_mut(pixels).zip(gy) {
        let v = g * scale;
        for o in gxc {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests;
