//! The two loops of every convolution, on zero-padded images flattened row by row.
//!
//! An image of C channels of H × W is held padded: each channel Hp × Wp (Hp = H + 2p_h,
//! Wp = W + 2p_w) with a zero border, channel c starting at c · Cs (Cs = Hp · Wp), and zeros
//! after the last channel. An output is computed at the flat positions q = y · Wp + x for
//! q < Q = H · Wp (x ≥ W are the padding columns, computed and thrown away). A "tap" j of the
//! im2col matrix, (channel i, d_y, d_x), is then the constant offset off_j = i · Cs + d_y · Wp +
//! d_x: the im2col entry of tap j at q is src[off_j + q]. So
//!
//! * [`direct`]: out[o][q] = init_o + Σ_j kern[j][o] · src[off_j + q] (a convolution, or the
//!   transposed one with the flipped kernel), for q in tiles of [`QT`];
//! * [`params`]: g[o][j] += Σ_{q < Q} s[o][q] · src[off_j + q] (the kernel gradient).
//!
//! Both keep a tile of outputs in registers over the whole reduction: 6 output channels × 8
//! positions (12 accumulators of four: enough independent fused multiply-adds to fill two FMA
//! pipes of latency 4; 2 loads and 6 broadcasts per 12 of them), or 2 channels × 6 taps × 4
//! positions (12 accumulators, 8 loads per 12). They are compiled for AVX2 + FMA and
//! portably, and run the first where the CPU has it; every multiply-add is fused (one
//! rounding: `_mm256_fmadd_pd`, [`f64::mul_add`]) and the summation order is the same in both,
//! so they give the same bits.

use crate::activation::avx2_fma;

/// Output positions per tile of [`direct`] (two vectors of four; three would need all 16
/// vector registers, and spill).
pub const QT: usize = 8;
/// Vectors of four per tile of [`direct`].
const QV: usize = QT / 4;
/// Output channels per tile of [`direct`].
pub const OT: usize = 6;
/// Output channels per tile of [`params`].
const OP: usize = 2;
/// Taps per tile of [`params`].
const JT: usize = 6;

/// The output channels of the tile of [`direct`] from o0: [`OT`], or fewer in the last.
#[inline]
fn tile_of(o0: usize, n_out: usize) -> usize {
    OT.min(n_out - o0)
}

/// A kernel k[o][j] = `k(o, j)` (n_out × taps) packed for [`direct`]: for each tile of
/// channels o0 … o0 + O, the block at o0 · taps holds k[o0 + o][j] at j · O + o.
pub fn pack(n_out: usize, taps: usize, packed: &mut [f64], k: impl Fn(usize, usize) -> f64) {
    for o0 in (0..n_out).step_by(OT) {
        let o_n = tile_of(o0, n_out);
        let block = &mut packed[o0 * taps..(o0 + o_n) * taps];
        for j in 0..taps {
            for o in 0..o_n {
                block[j * o_n + o] = k(o0 + o, j);
            }
        }
    }
}

/// Checks the bounds every access of [`direct`] stays within.
#[allow(clippy::too_many_arguments)]
fn check_direct(
    packed: &[f64],
    n_out: usize,
    off: &[usize],
    src: &[f64],
    init: Option<&[f64]>,
    out: &[f64],
    ostride: usize,
    qr: usize,
) {
    assert!(qr.is_multiple_of(QT) && ostride >= qr);
    assert!(n_out == 0 || out.len() >= (n_out - 1) * ostride + qr);
    assert!(packed.len() >= off.len() * n_out);
    let max_off = off.iter().copied().max().unwrap_or(0);
    assert!(off.is_empty() || qr == 0 || src.len() >= max_off + qr);
    if let Some(b) = init {
        assert!(b.len() >= n_out);
    }
}

/// out[o · ostride + q] = init[o] (0 without) + Σ_j k[o][j] · src[off[j] + q] for o < n_out
/// and q < qr (a multiple of [`QT`]), the kernel [`pack`]ed; the sum over j in order, one
/// fused multiply-add each.
#[allow(clippy::too_many_arguments)]
pub fn direct(
    packed: &[f64],
    n_out: usize,
    off: &[usize],
    src: &[f64],
    init: Option<&[f64]>,
    out: &mut [f64],
    ostride: usize,
    qr: usize,
) {
    check_direct(packed, n_out, off, src, init, out, ostride, qr);
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the bounds are checked above.
        return unsafe { x86::direct(packed, n_out, off, src, init, out, ostride, qr) };
    }
    direct_portable(packed, n_out, off, src, init, out, ostride, qr)
}

/// [`direct`] without CPU-specific instructions (the same bits).
#[allow(clippy::too_many_arguments)]
pub fn direct_portable(
    packed: &[f64],
    n_out: usize,
    off: &[usize],
    src: &[f64],
    init: Option<&[f64]>,
    out: &mut [f64],
    ostride: usize,
    qr: usize,
) {
    check_direct(packed, n_out, off, src, init, out, ostride, qr);
    let taps = off.len();
    for o0 in (0..n_out).step_by(OT) {
        let o_n = tile_of(o0, n_out);
        let kb = &packed[o0 * taps..(o0 + o_n) * taps];
        for q0 in (0..qr).step_by(QT) {
            let mut acc = [[0.0; QT]; OT];
            for (o, a) in acc.iter_mut().enumerate().take(o_n) {
                *a = [init.map_or(0.0, |b| b[o0 + o]); QT];
            }
            for (j, &oj) in off.iter().enumerate() {
                let x = &src[oj + q0..oj + q0 + QT];
                for (o, a) in acc.iter_mut().enumerate().take(o_n) {
                    let k = kb[j * o_n + o];
                    for (al, &xl) in a.iter_mut().zip(x) {
                        *al = xl.mul_add(k, *al);
                    }
                }
            }
            for (o, a) in acc.iter().enumerate().take(o_n) {
                let base = (o0 + o) * ostride + q0;
                out[base..base + QT].copy_from_slice(a);
            }
        }
    }
}

/// Checks the bounds every access of [`params`] stays within.
fn check_params(
    s: &[f64],
    sstride: usize,
    n_out: usize,
    off: &[usize],
    src: &[f64],
    len: usize,
    g: &[f64],
) {
    assert!(g.len() >= n_out * off.len());
    if n_out > 0 && len > 0 {
        assert!(s.len() >= (n_out - 1) * sstride + len);
        let max_off = off.iter().copied().max().unwrap_or(0);
        assert!(off.is_empty() || src.len() >= max_off + len);
    }
}

/// g[o · off.len() + j] += Σ_{q < len} s[o · sstride + q] · src[off[j] + q] for o < n_out and
/// every tap j: four partial sums per entry over q ≡ 0, 1, 2, 3 (mod 4) up to 4⌊len/4⌋, one
/// fused multiply-add each, combined as (l₀ + l₁) + (l₂ + l₃), then the tail in order.
pub fn params(
    s: &[f64],
    sstride: usize,
    n_out: usize,
    off: &[usize],
    src: &[f64],
    len: usize,
    g: &mut [f64],
) {
    check_params(s, sstride, n_out, off, src, len, g);
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the bounds are checked above.
        return unsafe { x86::params(s, sstride, n_out, off, src, len, g) };
    }
    params_portable(s, sstride, n_out, off, src, len, g)
}

/// The reduction of one entry of [`params`] from its four partial sums and the tail.
#[inline(always)]
fn finish(a: [f64; 4], s: &[f64], x: &[f64], body: usize, len: usize) -> f64 {
    let mut sum = (a[0] + a[1]) + (a[2] + a[3]);
    for q in body..len {
        sum = s[q].mul_add(x[q], sum);
    }
    sum
}

/// [`params`] without CPU-specific instructions (the same bits).
pub fn params_portable(
    s: &[f64],
    sstride: usize,
    n_out: usize,
    off: &[usize],
    src: &[f64],
    len: usize,
    g: &mut [f64],
) {
    check_params(s, sstride, n_out, off, src, len, g);
    let taps = off.len();
    let body = len / 4 * 4;
    for o in 0..n_out {
        let so = &s[o * sstride..o * sstride + len];
        for (j, &oj) in off.iter().enumerate() {
            let x = &src[oj..oj + len];
            let mut a = [0.0; 4];
            for q in (0..body).step_by(4) {
                for l in 0..4 {
                    a[l] = so[q + l].mul_add(x[q + l], a[l]);
                }
            }
            g[o * taps + j] += finish(a, so, x, body, len);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod x86 {
    use super::{finish, tile_of, JT, OP, OT, QT, QV};
    use std::arch::x86_64::*;

    /// One tile of O channels × [`QT`] positions.
    #[inline(always)]
    unsafe fn direct_tile<const O: usize>(
        kb: *const f64,
        off: &[usize],
        src: *const f64,
        init: [f64; O],
        out: *mut f64,
        ostride: usize,
    ) {
        let mut acc = [[_mm256_setzero_pd(); QV]; O];
        for o in 0..O {
            acc[o] = [_mm256_set1_pd(init[o]); QV];
        }
        let mut kp = kb;
        for &oj in off {
            let x: [__m256d; QV] = std::array::from_fn(|v| _mm256_loadu_pd(src.add(oj + 4 * v)));
            for o in 0..O {
                let k = _mm256_broadcast_sd(&*kp.add(o));
                for v in 0..QV {
                    acc[o][v] = _mm256_fmadd_pd(x[v], k, acc[o][v]);
                }
            }
            kp = kp.add(O);
        }
        for o in 0..O {
            for v in 0..QV {
                _mm256_storeu_pd(out.add(o * ostride + 4 * v), acc[o][v]);
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn direct_channels<const O: usize>(
        packed: &[f64],
        o0: usize,
        off: &[usize],
        src: &[f64],
        init: Option<&[f64]>,
        out: &mut [f64],
        ostride: usize,
        qr: usize,
    ) {
        let taps = off.len();
        let kb = packed.as_ptr().add(o0 * taps);
        let mut bias = [0.0; O];
        if let Some(b) = init {
            bias.copy_from_slice(&b[o0..o0 + O]);
        }
        let op = out.as_mut_ptr().add(o0 * ostride);
        for q0 in (0..qr).step_by(QT) {
            direct_tile::<O>(kb, off, src.as_ptr().add(q0), bias, op.add(q0), ostride);
        }
    }

    /// [`super::direct`] with AVX2 and FMA; the caller checked the bounds.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn direct(
        packed: &[f64],
        n_out: usize,
        off: &[usize],
        src: &[f64],
        init: Option<&[f64]>,
        out: &mut [f64],
        ostride: usize,
        qr: usize,
    ) {
        for o0 in (0..n_out).step_by(OT) {
            // Direct calls (not through a pointer), so that they inline into this AVX2 code.
            match tile_of(o0, n_out) {
                6 => direct_channels::<6>(packed, o0, off, src, init, out, ostride, qr),
                5 => direct_channels::<5>(packed, o0, off, src, init, out, ostride, qr),
                4 => direct_channels::<4>(packed, o0, off, src, init, out, ostride, qr),
                3 => direct_channels::<3>(packed, o0, off, src, init, out, ostride, qr),
                2 => direct_channels::<2>(packed, o0, off, src, init, out, ostride, qr),
                _ => direct_channels::<1>(packed, o0, off, src, init, out, ostride, qr),
            }
        }
    }

    /// One tile of O channels × J taps.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn params_tile<const O: usize, const J: usize>(
        s: &[f64],
        sstride: usize,
        o0: usize,
        off: &[usize],
        j0: usize,
        src: &[f64],
        len: usize,
        g: &mut [f64],
    ) {
        let taps = off.len();
        let body = len / 4 * 4;
        let sp: [*const f64; O] = std::array::from_fn(|o| s.as_ptr().add((o0 + o) * sstride));
        let xp: [*const f64; J] = std::array::from_fn(|j| src.as_ptr().add(off[j0 + j]));
        let mut acc = [[_mm256_setzero_pd(); J]; O];
        let mut q = 0;
        while q < body {
            let sv: [__m256d; O] = std::array::from_fn(|o| _mm256_loadu_pd(sp[o].add(q)));
            for j in 0..J {
                let x = _mm256_loadu_pd(xp[j].add(q));
                for o in 0..O {
                    acc[o][j] = _mm256_fmadd_pd(sv[o], x, acc[o][j]);
                }
            }
            q += 4;
        }
        for o in 0..O {
            let so = &s[(o0 + o) * sstride..(o0 + o) * sstride + len];
            for j in 0..J {
                let mut a = [0.0; 4];
                _mm256_storeu_pd(a.as_mut_ptr(), acc[o][j]);
                let x = &src[off[j0 + j]..off[j0 + j] + len];
                g[(o0 + o) * taps + j0 + j] += finish(a, so, x, body, len);
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn params_taps<const O: usize>(
        s: &[f64],
        sstride: usize,
        o0: usize,
        off: &[usize],
        src: &[f64],
        len: usize,
        g: &mut [f64],
    ) {
        let taps = off.len();
        let mut j0 = 0;
        while j0 + JT <= taps {
            params_tile::<O, JT>(s, sstride, o0, off, j0, src, len, g);
            j0 += JT;
        }
        while j0 < taps {
            params_tile::<O, 1>(s, sstride, o0, off, j0, src, len, g);
            j0 += 1;
        }
    }

    /// [`super::params`] with AVX2 and FMA; the caller checked the bounds.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn params(
        s: &[f64],
        sstride: usize,
        n_out: usize,
        off: &[usize],
        src: &[f64],
        len: usize,
        g: &mut [f64],
    ) {
        for o0 in (0..n_out).step_by(OP) {
            match OP.min(n_out - o0) {
                2 => params_taps::<2>(s, sstride, o0, off, src, len, g),
                _ => params_taps::<1>(s, sstride, o0, off, src, len, g),
            }
        }
    }
}
