//! The convolution against a naive direct reference, the step's kernels against their
//! formulas, and central finite differences of the step, the opening-type and 1×1
//! convolutions, the poolings and the global average.

use super::*;

/// SplitMix64 values in [−1, 1).
fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// X[e][i][y][x] with zero padding outside the image.
fn at(c: &Conv2d, channels: usize, x: &[f64], e: usize, i: usize, y: isize, xx: isize) -> f64 {
    if y < 0 || xx < 0 || y >= c.height as isize || xx >= c.width as isize {
        return 0.0;
    }
    x[((e * channels + i) * c.height + y as usize) * c.width + xx as usize]
}

/// Z = K ∗ X + b by the defining sum.
fn naive_forward(c: &Conv2d, k: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    let batch = x.len() / c.in_len();
    let (ph, pw) = ((c.kernel_h / 2) as isize, (c.kernel_w / 2) as isize);
    let mut z = vec![0.0; batch * c.out_len()];
    for e in 0..batch {
        for o in 0..c.out_channels {
            for y in 0..c.height {
                for xx in 0..c.width {
                    let mut v = b[o];
                    for i in 0..c.in_channels {
                        for dy in 0..c.kernel_h {
                            for dx in 0..c.kernel_w {
                                let kv = k
                                    [((o * c.in_channels + i) * c.kernel_h + dy) * c.kernel_w + dx];
                                v += kv
                                    * at(
                                        c,
                                        c.in_channels,
                                        x,
                                        e,
                                        i,
                                        y as isize + dy as isize - ph,
                                        xx as isize + dx as isize - pw,
                                    );
                            }
                        }
                    }
                    z[((e * c.out_channels + o) * c.height + y) * c.width + xx] = v;
                }
            }
        }
    }
    z
}

/// dX += Kᵀ ⋆ S and ∂K += S ⋆ X, ∂b += Σ S by scattering each output's contributions (the
/// transpose of the defining sum, written independently of the kernels' gather form).
fn naive_backward(c: &Conv2d, k: &[f64], x: &[f64], s: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / c.in_len();
    let (ph, pw) = ((c.kernel_h / 2) as isize, (c.kernel_w / 2) as isize);
    let mut dx = vec![0.0; x.len()];
    let mut gk = vec![0.0; c.weight_len()];
    let mut gb = vec![0.0; c.out_channels];
    for e in 0..batch {
        for o in 0..c.out_channels {
            for y in 0..c.height {
                for xx in 0..c.width {
                    let sv = s[((e * c.out_channels + o) * c.height + y) * c.width + xx];
                    gb[o] += sv;
                    for i in 0..c.in_channels {
                        for dy in 0..c.kernel_h {
                            for dx_ in 0..c.kernel_w {
                                let (yy, xs) = (
                                    y as isize + dy as isize - ph,
                                    xx as isize + dx_ as isize - pw,
                                );
                                if yy < 0
                                    || xs < 0
                                    || yy >= c.height as isize
                                    || xs >= c.width as isize
                                {
                                    continue;
                                }
                                let xi = ((e * c.in_channels + i) * c.height + yy as usize)
                                    * c.width
                                    + xs as usize;
                                let ki =
                                    ((o * c.in_channels + i) * c.kernel_h + dy) * c.kernel_w + dx_;
                                dx[xi] += k[ki] * sv;
                                gk[ki] += sv * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, gk, gb)
}

/// (in, out, H, W, k_h, k_w): square and not, the 1-D case (3×1, 5×1), in ≠ out, 1×1
/// kernels, kernel 5, a kernel larger than the image.
const SHAPES: [(usize, usize, usize, usize, usize, usize); 10] = [
    (3, 3, 5, 4, 3, 3),
    (2, 5, 6, 7, 3, 3),
    (4, 2, 7, 5, 5, 5),
    (3, 4, 9, 1, 3, 1),
    (2, 2, 11, 1, 5, 1),
    (3, 5, 4, 6, 1, 1),
    (5, 2, 3, 3, 1, 1),
    (1, 1, 3, 2, 5, 5),
    (2, 3, 4, 5, 3, 5),
    (16, 16, 8, 8, 3, 3),
];

fn conv_of(s: (usize, usize, usize, usize, usize, usize)) -> Conv2d {
    Conv2d {
        in_channels: s.0,
        out_channels: s.1,
        height: s.2,
        width: s.3,
        kernel_h: s.4,
        kernel_w: s.5,
    }
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn convolution_matches_the_direct_sum() {
    for (n, &shape) in SHAPES.iter().enumerate() {
        let c = conv_of(shape);
        let batch = 3;
        let seed = 10 * n as u64;
        let (k, b) = (
            data(c.weight_len(), seed + 1),
            data(c.out_channels, seed + 2),
        );
        let (x, s) = (
            data(batch * c.in_len(), seed + 3),
            data(batch * c.out_len(), seed + 4),
        );
        let mut scratch = Scratch::default();
        let mut z = vec![f64::NAN; batch * c.out_len()];
        c.forward(&k, &b, &x, &mut z, &mut scratch);
        assert!(
            close(&z, &naive_forward(&c, &k, &b, &x), 1e-13),
            "forward {c:?}"
        );

        let (dx_ref, gk_ref, gb_ref) = naive_backward(&c, &k, &x, &s);
        // The kernels add into what is there.
        let base = data(batch * c.in_len(), seed + 5);
        let mut dx = base.clone();
        c.backward_input(&k, &s, &mut dx, &mut scratch);
        let dx_ref: Vec<f64> = dx_ref.iter().zip(&base).map(|(a, b)| a + b).collect();
        assert!(close(&dx, &dx_ref, 1e-13), "backward_input {c:?}");
        let mut gk = vec![1.0; c.weight_len()];
        let mut gb = vec![-1.0; c.out_channels];
        c.backward_params(&x, &s, &mut gk, &mut gb, &mut scratch);
        let gk_ref: Vec<f64> = gk_ref.iter().map(|g| g + 1.0).collect();
        let gb_ref: Vec<f64> = gb_ref.iter().map(|g| g - 1.0).collect();
        assert!(close(&gk, &gk_ref, 1e-13), "backward_params K {c:?}");
        assert!(close(&gb, &gb_ref, 1e-13), "backward_params b {c:?}");
    }
}

/// The step's shapes: c channels, H × W, k_h × k_w.
const STEP_SHAPES: [(usize, usize, usize, usize, usize); 5] = [
    (3, 5, 4, 3, 3),
    (2, 9, 1, 3, 1),
    (2, 8, 1, 5, 1),
    (4, 6, 6, 5, 5),
    (8, 7, 9, 3, 3),
];

fn conv_layer(s: (usize, usize, usize, usize, usize)) -> Conv {
    Conv {
        conv: Conv2d {
            in_channels: s.0,
            out_channels: s.0,
            height: s.1,
            width: s.2,
            kernel_h: s.3,
            kernel_w: s.4,
        },
    }
}

/// The kernels compute the step, its adjoint and its gradient as the formulas say, with the
/// same bits in and out of place and with and without the adjoint update.
#[test]
fn step_kernels_match_the_formulas() {
    for &shape in &STEP_SHAPES {
        let layer = conv_layer(shape);
        let c = layer.conv;
        let batch = 5;
        let n = layer.state_len();
        let theta = data(layer.param_len(), 1);
        let (k, b) = theta.split_at(c.weight_len());
        let (u, lam0) = (data(n * batch, 3), data(n * batch, 4));
        let h = 0.3;
        for act in Activation::ALL {
            let z = naive_forward(&c, k, b, &u);
            let next_ref: Vec<f64> = u
                .iter()
                .zip(&z)
                .map(|(x, zi)| x + h * act.value(*zi))
                .collect();
            let s_ref: Vec<f64> = z
                .iter()
                .zip(&lam0)
                .map(|(zi, l)| act.derivative(*zi) * h * l)
                .collect();
            let (dx, gk_ref, gb_ref) = naive_backward(&c, k, &u, &s_ref);
            let lam_ref: Vec<f64> = lam0.iter().zip(&dx).map(|(a, b)| a + b).collect();

            let step = layer.linearize(act, h, &theta);
            let mut scratch = Scratch::new(n * batch);
            let mut next = vec![0.0; n * batch];
            step.forward(&u, &mut next, &mut scratch);
            let mut inplace = u.clone();
            step.forward_in_place(&mut inplace, &mut scratch);
            assert!(close(&next, &next_ref, 1e-13), "forward {c:?} {act}");
            assert_eq!(inplace, next, "in-place forward {c:?} {act}");

            let mut lam = lam0.clone();
            let mut g = vec![0.0; layer.param_len()];
            step.adjoint(&u, &mut lam, &mut scratch, Some(&mut g));
            assert!(close(&lam, &lam_ref, 1e-13), "adjoint {c:?} {act}");
            let (gk, gb) = g.split_at(c.weight_len());
            assert!(
                close(gk, &gk_ref, 1e-13) && close(gb, &gb_ref, 1e-13),
                "gradient {c:?} {act}"
            );
            let mut lam_nograd = lam0.clone();
            step.adjoint(&u, &mut lam_nograd, &mut scratch, None);
            assert_eq!(lam_nograd, lam, "adjoint without gradient {c:?} {act}");

            let mut g2 = vec![0.0; layer.param_len()];
            step.gradient(&u, &lam0, &mut scratch, &mut g2);
            assert_eq!(g2, g, "gradient alone {c:?} {act}");

            let mut lam3 = vec![0.0; n * batch];
            let mut g3 = vec![0.0; layer.param_len()];
            step.adjoint_from(&u, &lam0, &mut lam3, &mut scratch, Some(&mut g3));
            assert_eq!(lam3, lam, "out-of-place adjoint {c:?} {act}");
            assert_eq!(g3, g, "out-of-place gradient {c:?} {act}");

            // Keeping D = σ'(Z) and taking it gives the same bits.
            let (mut next_k, mut d) = (vec![0.0; n * batch], vec![0.0; n * batch]);
            step.forward_keeping(&u, &mut next_k, &mut d, &mut scratch);
            assert_eq!(next_k, next, "forward_keeping {c:?} {act}");
            let mut d2 = vec![0.0; n * batch];
            step.derivative(&u, &mut d2, &mut scratch);
            assert_eq!(d2, d, "derivative {c:?} {act}");
            let (mut inplace_k, mut d3) = (u.clone(), vec![0.0; n * batch]);
            step.forward_in_place_keeping(&mut inplace_k, &mut d3, &mut scratch);
            assert_eq!(
                (&inplace_k, &d3),
                (&next, &d),
                "in place keeping {c:?} {act}"
            );
            let (mut lam4, mut g4) = (lam0.clone(), vec![0.0; layer.param_len()]);
            step.adjoint_given(&u, &d, None, &mut lam4, &mut scratch, Some(&mut g4));
            assert_eq!((&lam4, &g4), (&lam, &g), "adjoint_given {c:?} {act}");
            let (mut lam5, mut g5) = (vec![0.0; n * batch], vec![0.0; layer.param_len()]);
            step.adjoint_given(&u, &d, Some(&lam0), &mut lam5, &mut scratch, Some(&mut g5));
            assert_eq!(
                (&lam5, &g5),
                (&lam, &g),
                "adjoint_given out of place {c:?} {act}"
            );
            let mut lam6 = lam0.clone();
            step.adjoint_given(&u, &d, None, &mut lam6, &mut scratch, None);
            assert_eq!(lam6, lam, "adjoint_given without gradient {c:?} {act}");
            let mut g6 = vec![0.0; layer.param_len()];
            step.gradient_given(&u, &d, &lam0, &mut scratch, &mut g6);
            assert_eq!(g6, g, "gradient_given {c:?} {act}");

            let dot_ref: f64 = z.iter().zip(&lam0).map(|(zi, l)| l * act.value(*zi)).sum();
            let dot = step.increment_dot(&u, &lam0, &mut scratch);
            assert!(
                (dot - dot_ref).abs() <= 1e-12 * (1.0 + dot_ref.abs()),
                "increment_dot {c:?} {act}: {dot} vs {dot_ref}"
            );
        }
    }
}

/// The relative error ‖fd − g‖ / ‖fd‖ of a gradient `g` against central differences of `f`
/// in every coordinate of `at` (step 1e-6), as in gradient_tests.rs.
fn fd_error(f: &dyn Fn(&[f64]) -> f64, at: &[f64], g: &[f64]) -> f64 {
    let eps = 1e-6;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..at.len() {
        let (mut p, mut m) = (at.to_vec(), at.to_vec());
        p[i] += eps;
        m[i] -= eps;
        let fd = (f(&p) - f(&m)) / (2.0 * eps);
        num += (fd - g[i]).powi(2);
        den += fd.powi(2);
    }
    assert!(den > 0.0, "zero gradient, inconclusive");
    (num / den).sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// J(U, θ) = ⟨Λ⁺, Φ_θ(U)⟩: its derivative in U is the adjoint's Λ, in K and b the gradient.
#[test]
fn step_adjoint_and_gradient_match_finite_differences() {
    for (n_shape, &shape) in STEP_SHAPES.iter().take(4).enumerate() {
        let layer = conv_layer(shape);
        let c = layer.conv;
        let batch = 2;
        let n = layer.state_len();
        let seed = 100 * n_shape as u64;
        let theta = data(layer.param_len(), seed + 1);
        let (u, lam0) = (data(n * batch, seed + 2), data(n * batch, seed + 3));
        for act in Activation::ALL {
            let h = 0.7;
            let j = |u: &[f64], theta: &[f64]| {
                let step = layer.linearize(act, h, theta);
                let mut next = vec![0.0; u.len()];
                step.forward(u, &mut next, &mut Scratch::default());
                dot(&lam0, &next)
            };
            let step = layer.linearize(act, h, &theta);
            let mut lam = lam0.clone();
            let mut g = vec![0.0; layer.param_len()];
            step.adjoint(&u, &mut lam, &mut Scratch::default(), Some(&mut g));
            let e = fd_error(&|v| j(v, &theta), &u, &lam);
            assert!(e < 1e-6, "state {c:?} {act}: {e:e}");
            // The directional derivative along one random direction too.
            let v = data(u.len(), seed + 9);
            let eps = 1e-6;
            let up: Vec<f64> = u.iter().zip(&v).map(|(a, b)| a + eps * b).collect();
            let um: Vec<f64> = u.iter().zip(&v).map(|(a, b)| a - eps * b).collect();
            let fd = (j(&up, &theta) - j(&um, &theta)) / (2.0 * eps);
            let ad = dot(&lam, &v);
            assert!(
                (fd - ad).abs() < 1e-6 * fd.abs(),
                "direction {c:?} {act}: {fd} vs {ad}"
            );
            let w = c.weight_len();
            let jk = |kk: &[f64]| {
                let t: Vec<f64> = kk.iter().chain(&theta[w..]).copied().collect();
                j(&u, &t)
            };
            let e = fd_error(&jk, &theta[..w], &g[..w]);
            assert!(e < 1e-6, "K {c:?} {act}: {e:e}");
            let jb = |bb: &[f64]| {
                let t: Vec<f64> = theta[..w].iter().chain(bb).copied().collect();
                j(&u, &t)
            };
            let e = fd_error(&jb, &theta[w..], &g[w..]);
            assert!(e < 1e-6, "b {c:?} {act}: {e:e}");
        }
    }
}

/// J = ⟨L, σ(K ∗ X + b)⟩ for convolutions changing channels (an opening layer) and
/// J = ⟨L, K ∗ X + b⟩ for 1×1 channel changes: the derivatives in X, K and b from
/// backward_input and backward_params with S = σ'(Z) ⊙ L (S = L without σ).
#[test]
fn opening_and_channel_change_match_finite_differences() {
    let cases = [
        (conv_of((3, 5, 5, 4, 3, 3)), true),
        (conv_of((2, 4, 7, 1, 5, 1)), true),
        (conv_of((1, 6, 6, 6, 5, 5)), true),
        (conv_of((4, 7, 5, 3, 1, 1)), false),
        (conv_of((6, 3, 4, 1, 1, 1)), false),
    ];
    for (n_case, &(c, activated)) in cases.iter().enumerate() {
        let batch = 2;
        let seed = 1000 + 10 * n_case as u64;
        let theta = data(c.param_len(), seed);
        let x = data(batch * c.in_len(), seed + 1);
        let l = data(batch * c.out_len(), seed + 2);
        for act in Activation::ALL {
            let w = c.weight_len();
            let j = |x: &[f64], theta: &[f64]| {
                let mut z = vec![0.0; l.len()];
                c.forward(&theta[..w], &theta[w..], x, &mut z, &mut Scratch::default());
                if activated {
                    z.iter().zip(&l).map(|(zi, li)| li * act.value(*zi)).sum()
                } else {
                    dot(&z, &l)
                }
            };
            let mut scratch = Scratch::default();
            let mut z = vec![0.0; l.len()];
            c.forward(&theta[..w], &theta[w..], &x, &mut z, &mut scratch);
            let s: Vec<f64> = if activated {
                let mut s = vec![0.0; z.len()];
                activation::scaled_derivative(act, &z, &l, &mut s);
                s
            } else {
                l.clone()
            };
            let mut dx = vec![0.0; x.len()];
            c.backward_input(&theta[..w], &s, &mut dx, &mut scratch);
            let (mut gk, mut gb) = (vec![0.0; w], vec![0.0; c.out_channels]);
            c.backward_params(&x, &s, &mut gk, &mut gb, &mut scratch);
            let e = fd_error(&|v| j(v, &theta), &x, &dx);
            assert!(e < 1e-6, "X {c:?} {act}: {e:e}");
            let jk = |kk: &[f64]| {
                let t: Vec<f64> = kk.iter().chain(&theta[w..]).copied().collect();
                j(&x, &t)
            };
            assert!(fd_error(&jk, &theta[..w], &gk) < 1e-6, "K {c:?} {act}");
            let jb = |bb: &[f64]| {
                let t: Vec<f64> = theta[..w].iter().chain(bb).copied().collect();
                j(&x, &t)
            };
            assert!(fd_error(&jb, &theta[w..], &gb) < 1e-6, "b {c:?} {act}");
            if !activated {
                break;
            }
        }
    }
}

#[test]
fn pooling_matches_its_definition_and_finite_differences() {
    // (channels, H, W): even, odd (last row/column dropped), the 1-D 2×1 window.
    for (n_case, &(ch, hh, ww)) in [(2, 4, 6), (3, 5, 7), (2, 9, 1), (1, 2, 2)]
        .iter()
        .enumerate()
    {
        let batch = 3;
        let (ho, wo) = pooled_size(hh, ww);
        assert_eq!((ho, wo), (hh / 2, if ww == 1 { 1 } else { ww / 2 }));
        let x = data(batch * ch * hh * ww, 50 + n_case as u64);
        let gy = data(batch * ch * ho * wo, 60 + n_case as u64);
        for kind in [Pool::Average, Pool::Max] {
            let mut y = vec![f64::NAN; gy.len()];
            pool_forward(kind, ch, hh, ww, &x, &mut y);
            // The definition, window by window.
            let (wh, wwin) = pool_window(ww);
            for e in 0..batch * ch {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let vals: Vec<f64> = (0..wh)
                            .flat_map(|r| (0..wwin).map(move |s| (r, s)))
                            .map(|(r, s)| x[e * hh * ww + (2 * oy + r) * ww + wwin * ox + s])
                            .collect();
                        let want = match kind {
                            Pool::Average => vals.iter().sum::<f64>() / vals.len() as f64,
                            Pool::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        };
                        let got = y[e * ho * wo + oy * wo + ox];
                        assert!((got - want).abs() <= 1e-15, "{kind:?} {got} vs {want}");
                    }
                }
            }
            let j = |x: &[f64]| {
                let mut y = vec![0.0; gy.len()];
                pool_forward(kind, ch, hh, ww, x, &mut y);
                dot(&gy, &y)
            };
            let mut gx = vec![0.0; x.len()];
            pool_adjoint(kind, ch, hh, ww, &x, &gy, &mut gx);
            let e = fd_error(&j, &x, &gx);
            assert!(e < 1e-6, "{kind:?} {ch}×{hh}×{ww}: {e:e}");
        }
    }
}

#[test]
fn max_pooling_sends_a_tie_to_the_first_maximum() {
    let x = [1.0, 3.0, 3.0, 3.0];
    let mut gx = [0.0; 4];
    pool_adjoint(Pool::Max, 1, 2, 2, &x, &[2.0], &mut gx);
    assert_eq!(gx, [0.0, 2.0, 0.0, 0.0]);
    let mut y = [0.0];
    pool_forward(Pool::Max, 1, 2, 2, &x, &mut y);
    assert_eq!(y, [3.0]);
}

#[test]
fn global_average_matches_finite_differences() {
    let (ch, pixels, batch) = (3, 7, 2);
    let x = data(batch * ch * pixels, 70);
    let gy = data(batch * ch, 71);
    let mut y = vec![0.0; gy.len()];
    global_average(ch, pixels, &x, &mut y);
    for (i, yi) in y.iter().enumerate() {
        let want = x[i * pixels..(i + 1) * pixels].iter().sum::<f64>() / pixels as f64;
        assert!((yi - want).abs() <= 1e-15);
    }
    let j = |x: &[f64]| {
        let mut y = vec![0.0; gy.len()];
        global_average(ch, pixels, x, &mut y);
        dot(&gy, &y)
    };
    let mut gx = vec![0.0; x.len()];
    global_average_adjoint(ch, pixels, &gy, &mut gx);
    assert!(fd_error(&j, &x, &gx) < 1e-6);
}

#[test]
fn pool_names_parse() {
    assert_eq!("average".parse::<Pool>(), Ok(Pool::Average));
    assert_eq!("max".parse::<Pool>(), Ok(Pool::Max));
    let e = "min".parse::<Pool>().unwrap_err();
    assert_eq!(
        e,
        "unknown pooling \"min\" (expected \"average\" or \"max\")"
    );
}

#[test]
fn flops_and_lengths() {
    let c = Conv2d::square(3, 5, 4, 6, 3);
    assert_eq!(c.weight_len(), 5 * 3 * 9);
    assert_eq!(c.param_len(), 5 * 3 * 9 + 5);
    assert_eq!((c.in_len(), c.out_len()), (3 * 24, 5 * 24));
    assert_eq!(c.flops(2), 2.0 * 135.0 * 24.0 * 2.0);
    let layer = Conv::new(4, 5, 5, 3);
    assert_eq!(layer.state_len(), 100);
    assert_eq!(layer.param_len(), 4 * 4 * 9 + 4);
    assert_eq!(layer.step_flops(3), 4.0 * layer.conv.flops(3));
}

/// The AVX2 + FMA loops and the portable ones give the same bits (where the CPU has AVX2 the
/// dispatching functions run the former), channel and tap counts with tails included.
#[test]
fn every_variant_of_the_loops_gives_the_same_bits() {
    let shapes: [(usize, usize, usize); 5] = [
        (7, 9, 37),
        (4, 27, 64),
        (1, 5, 3),
        (16, 144, 120),
        (3, 2, 13),
    ];
    for (n_out, taps, len) in shapes {
        let qr = len.div_ceil(direct::QT) * direct::QT;
        let off: Vec<usize> = (0..taps).map(|j| (j * 7) % 23 + j / 3).collect();
        let src = data(off.iter().max().unwrap() + qr, 80);
        let k = data(n_out * taps, 81);
        let mut packed = vec![0.0; n_out * taps];
        direct::pack(n_out, taps, &mut packed, |o, j| k[o * taps + j]);
        let bias = data(n_out, 82);
        for init in [None, Some(&bias[..])] {
            let mut a = vec![0.0; n_out * qr];
            let mut b = vec![1.0; n_out * qr];
            direct::direct(&packed, n_out, &off, &src, init, &mut a, qr, qr);
            direct::direct_portable(&packed, n_out, &off, &src, init, &mut b, qr, qr);
            assert_eq!(a, b, "direct {n_out} {taps} {len}");
            // And the sums themselves.
            for o in 0..n_out {
                for q in 0..qr {
                    let mut want = init.map_or(0.0, |b| b[o]);
                    for (j, &oj) in off.iter().enumerate() {
                        want = src[oj + q].mul_add(k[o * taps + j], want);
                    }
                    assert_eq!(a[o * qr + q], want);
                }
            }
        }
        let s = data((n_out - 1) * (len + 3) + len, 83);
        let mut ga = data(n_out * taps, 84);
        let mut gb = ga.clone();
        direct::params(&s, len + 3, n_out, &off, &src, len, &mut ga);
        direct::params_portable(&s, len + 3, n_out, &off, &src, len, &mut gb);
        assert_eq!(ga, gb, "params {n_out} {taps} {len}");
    }
}

/// An example's results do not depend on the batch it came in nor on what a scratch held
/// before (another shape's arrays, grown larger).
#[test]
fn results_depend_on_the_example_alone() {
    let layer = conv_layer((3, 6, 5, 3, 3));
    let n = layer.state_len();
    let theta = data(layer.param_len(), 90);
    let (u, lam0) = (data(4 * n, 91), data(4 * n, 92));
    let step = layer.linearize(Activation::Tanh, 0.4, &theta);
    // A scratch first used by a larger convolution.
    let mut used = Scratch::default();
    let big = conv_layer((8, 9, 9, 5, 5));
    let tb = data(big.param_len(), 93);
    let mut ub = data(2 * big.state_len(), 94);
    big.linearize(Activation::Relu, 1.0, &tb)
        .forward_in_place(&mut ub, &mut used);
    let mut lb = data(2 * big.state_len(), 95);
    big.linearize(Activation::Relu, 1.0, &tb)
        .adjoint(&ub, &mut lb, &mut used, None);
    let mut all = vec![0.0; 4 * n];
    step.forward(&u, &mut all, &mut used);
    let mut lam_all = lam0.clone();
    step.adjoint(&u, &mut lam_all, &mut used, None);
    for e in 0..4 {
        let r = e * n..(e + 1) * n;
        let mut one = vec![0.0; n];
        let mut fresh = Scratch::default();
        layer.conv.reserve(&mut fresh);
        step.forward(&u[r.clone()], &mut one, &mut fresh);
        assert_eq!(one, all[r.clone()], "forward of example {e}");
        let mut lam = lam0[r.clone()].to_vec();
        step.adjoint(&u[r.clone()], &mut lam, &mut Scratch::default(), None);
        assert_eq!(lam, lam_all[r], "adjoint of example {e}");
    }
}

/// The layout, checked by hand: a kernel whose only tap is (row 1, col 2) of 3 × 3, from
/// input channel 1 to output channel 0, copies input channel 1 one column to the left:
/// Z(0, y, x) = U(1, y, x + 1), with zeros past the right edge; channel 1 of Z gets only its
/// bias. Example 1 of the batch is example 0 shifted by one row, and its output shifts too.
#[test]
fn a_single_tap_kernel_shifts_its_channel() {
    let (h, w) = (4, 5);
    let c = Conv2d {
        in_channels: 2,
        out_channels: 2,
        height: h,
        width: w,
        kernel_h: 3,
        kernel_w: 3,
    };
    let mut k = vec![0.0; c.weight_len()];
    // [out 0][in 1][row 1][col 2]: index ((out·2 + in)·3 + row)·3 + col.
    let (out, inp, row, col) = (0, 1, 1, 2);
    k[((out * 2 + inp) * 3 + row) * 3 + col] = 1.0;
    let b = [0.0, 0.5];
    let value = |e: usize, ch: usize, y: usize, x: usize| {
        (100 * ch + 10 * (y + e) + x) as f64 + if y + e >= h { -1000.0 } else { 0.0 }
    };
    let mut u = vec![0.0; 2 * c.in_len()];
    for e in 0..2 {
        for ch in 0..2 {
            for y in 0..h {
                for x in 0..w {
                    u[e * c.in_len() + (ch * h + y) * w + x] = value(e, ch, y, x);
                }
            }
        }
    }
    let mut z = vec![f64::NAN; 2 * c.out_len()];
    c.forward(&k, &b, &u, &mut z, &mut Scratch::default());
    for e in 0..2 {
        for y in 0..h {
            for x in 0..w {
                let want = if x + 1 < w {
                    value(e, 1, y, x + 1)
                } else {
                    0.0
                };
                assert_eq!(z[e * c.out_len() + y * w + x], want, "e {e} y {y} x {x}");
                assert_eq!(z[e * c.out_len() + (h + y) * w + x], 0.5);
            }
        }
    }
}
