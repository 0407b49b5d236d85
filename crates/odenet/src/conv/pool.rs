//! 2×2 (or 2×1) average and max pooling, stride 2, and global average pooling, with their
//! adjoints. Layouts as in [`super`]: an example is C × H × W row-major.

use super::Conv2d;

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

/// Global average pooling: y\[c\] = (1/P) Σ_p x\[c\]\[p\], the mean over the `pixels` values of
/// each channel, per example (x: batch · channels · pixels, y: batch · channels).
pub fn global_average(channels: usize, pixels: usize, x: &[f64], y: &mut [f64]) {
    let batch = Conv2d::batch(x.len(), channels * pixels);
    assert_eq!(y.len(), batch * channels, "global average size");
    let scale = 1.0 / pixels as f64;
    for (xc, yc) in x.chunks_exact(pixels).zip(y.iter_mut()) {
        *yc = xc.iter().sum::<f64>() * scale;
    }
}

/// The adjoint of [`global_average`]: gx\[c\]\[p\] += gy\[c\] / P, per example.
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
