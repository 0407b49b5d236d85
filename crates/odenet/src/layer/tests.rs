//! The dense kernels against their formulas, the fused kernels against each other and
//! against themselves wherever a column sits in the batch.

use super::*;
use crate::linalg::broadcast_columns;

fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
        })
        .collect()
}

/// The kernels compute the step, its adjoint and its gradient as the formulas say.
#[test]
fn kernels_match_the_formulas() {
    for width in [1, 3, 4, 5, 8, 16, 17, 32] {
        let batch = 37;
        let (k, b, u, lam0) = (
            data(width * width, 1),
            data(width, 2),
            data(width * batch, 3),
            data(width * batch, 4),
        );
        let h = 0.3;
        for act in Activation::ALL {
            // Reference by GEMMs.
            let mut z = vec![0.0; width * batch];
            broadcast_columns(&b, &mut z);
            gemm(width, width, batch, 1.0, &k, false, &u, false, 1.0, &mut z);
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
            let mut lam_ref = lam0.clone();
            gemm(
                width,
                width,
                batch,
                1.0,
                &k,
                true,
                &s_ref,
                false,
                1.0,
                &mut lam_ref,
            );
            let mut gk_ref = vec![0.0; width * width];
            gemm(
                width,
                batch,
                width,
                1.0,
                &s_ref,
                false,
                &u,
                true,
                1.0,
                &mut gk_ref,
            );
            let mut gb_ref = vec![0.0; width];
            add_row_sums(width, &s_ref, &mut gb_ref);

            let dense = Dense { width };
            let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
            let step = dense.linearize(act, h, &theta);
            let mut scratch = Scratch::new(width * batch);
            let mut next = vec![0.0; width * batch];
            step.forward(&u, &mut next, &mut scratch);
            let mut inplace = u.clone();
            step.forward_in_place(&mut inplace, &mut scratch);
            let mut lam = lam0.clone();
            let mut g = vec![0.0; dense.param_len()];
            step.adjoint(&u, &mut lam, &mut scratch, Some(&mut g));
            let (gk, gb) = (g[..width * width].to_vec(), g[width * width..].to_vec());
            let mut g2 = vec![0.0; dense.param_len()];
            step.gradient(&u, &lam0, &mut scratch, &mut g2);
            let (gk2, gb2) = (g2[..width * width].to_vec(), g2[width * width..].to_vec());
            let close = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-13 * (1.0 + y.abs()))
            };
            assert!(
                close(&next, &next_ref) && close(&inplace, &next_ref),
                "forward w={width} {act}"
            );
            assert!(close(&lam, &lam_ref), "adjoint w={width} {act}");
            assert!(
                close(&gk, &gk_ref) && close(&gb, &gb_ref),
                "gradient w={width} {act}"
            );
            assert_eq!(gk, gk2);
            assert_eq!(gb, gb2);
            let mut lam3 = vec![0.0; width * batch];
            let mut g3 = vec![0.0; dense.param_len()];
            step.adjoint_from(&u, &lam0, &mut lam3, &mut scratch, Some(&mut g3));
            let (gk3, gb3) = (g3[..width * width].to_vec(), g3[width * width..].to_vec());
            assert_eq!(lam3, lam, "out-of-place adjoint w={width} {act}");
            assert_eq!((gk3, gb3), (gk, gb));
            // The kernels that keep or take D = σ'(Z) give the bits of those that do not.
            let mut d = vec![0.0; width * batch];
            let mut next_k = vec![0.0; width * batch];
            step.forward_keeping(&u, &mut next_k, &mut d, &mut scratch);
            assert_eq!(next_k, next, "forward_keeping w={width} {act}");
            let mut d2 = vec![0.0; width * batch];
            step.derivative(&u, &mut d2, &mut scratch);
            assert_eq!(d2, d, "derivative w={width} {act}");
            let (mut inplace_k, mut d3) = (u.clone(), vec![0.0; width * batch]);
            step.forward_in_place_keeping(&mut inplace_k, &mut d3, &mut scratch);
            assert_eq!(
                (inplace_k, d3),
                (inplace.clone(), d.clone()),
                "in place w={width} {act}"
            );
            let mut lam4 = lam0.clone();
            let mut g4 = vec![0.0; dense.param_len()];
            step.adjoint_given(&u, &d, None, &mut lam4, &mut scratch, Some(&mut g4));
            assert_eq!(lam4, lam, "adjoint_given w={width} {act}");
            assert_eq!(g4, g, "adjoint_given gradient w={width} {act}");
            let mut lam5 = vec![0.0; width * batch];
            let mut g5 = vec![0.0; dense.param_len()];
            step.adjoint_given(&u, &d, Some(&lam0), &mut lam5, &mut scratch, Some(&mut g5));
            assert_eq!(
                (lam5, g5),
                (lam.clone(), g.clone()),
                "adjoint_given out of place w={width} {act}"
            );
            let mut lam6 = lam0.clone();
            step.adjoint_given(&u, &d, None, &mut lam6, &mut scratch, None);
            assert_eq!(lam6, lam, "adjoint_given without gradient w={width} {act}");
            let mut g6 = vec![0.0; dense.param_len()];
            step.gradient_given(&u, &d, &lam0, &mut scratch, &mut g6);
            assert_eq!(g6, g2, "gradient_given w={width} {act}");
            let dot_ref: f64 = z.iter().zip(&lam0).map(|(zi, l)| l * act.value(*zi)).sum();
            let dot = step.increment_dot(&u, &lam0, &mut scratch);
            assert!(
                (dot - dot_ref).abs() <= 1e-12 * (1.0 + dot_ref.abs()),
                "increment_dot w={width} {act}: {dot} vs {dot_ref}"
            );
        }
    }
}

/// Every output of the fused kernels of `step` on a batch (forward in and out of place,
/// with and without D, the derivative, the adjoints in and out of place with their
/// gradient, from Z and from D, the gradient alone), for comparing variants.
fn fused_outputs(step: &DenseStep, u: &[f64], lam0: &[f64]) -> Vec<Vec<f64>> {
    let (n, p) = (u.len(), step.width * step.width + step.width);
    let mut scratch = Scratch::new(n);
    let mut next = vec![0.0; n];
    step.forward(u, &mut next, &mut scratch);
    let mut inplace = u.to_vec();
    step.forward_in_place(&mut inplace, &mut scratch);
    let (mut next_k, mut d) = (vec![0.0; n], vec![0.0; n]);
    step.forward_keeping(u, &mut next_k, &mut d, &mut scratch);
    let (mut inplace_k, mut d2) = (u.to_vec(), vec![0.0; n]);
    step.forward_in_place_keeping(&mut inplace_k, &mut d2, &mut scratch);
    let mut d3 = vec![0.0; n];
    step.derivative(u, &mut d3, &mut scratch);
    let (mut lam, mut g) = (lam0.to_vec(), vec![0.0; p]);
    step.adjoint(u, &mut lam, &mut scratch, Some(&mut g));
    let (mut lam2, mut g2) = (vec![0.0; n], vec![0.0; p]);
    step.adjoint_from(u, lam0, &mut lam2, &mut scratch, Some(&mut g2));
    let (mut lam3, mut g3) = (lam0.to_vec(), vec![0.0; p]);
    step.adjoint_given(u, &d, None, &mut lam3, &mut scratch, Some(&mut g3));
    let mut g4 = vec![0.0; p];
    step.gradient(u, lam0, &mut scratch, &mut g4);
    let mut g5 = vec![0.0; p];
    step.gradient_given(u, &d, lam0, &mut scratch, &mut g5);
    vec![
        next, inplace, next_k, d, inplace_k, d2, d3, lam, g, lam2, g2, lam3, g3, g4, g5,
    ]
}

/// The AVX-512 fused kernels (w = 8, 16; eight lanes a vector) give the bits of the AVX2
/// ones (four lanes) for every kernel and activation, on a batch of 37 (column groups
/// and a remainder).
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx512_fused_kernels_give_the_avx2_bits() {
    if !crate::activation::avx512() {
        eprintln!("inconclusive: no AVX-512 on this CPU, only the AVX2 kernels run");
        return;
    }
    let bits = |v: &[Vec<f64>]| -> Vec<Vec<u64>> {
        v.iter()
            .map(|x| x.iter().map(|y| y.to_bits()).collect())
            .collect()
    };
    for width in [8, 16] {
        assert!(fused::supported(width));
        let batch = 37;
        let (k, b, u, lam0) = (
            data(width * width, 21),
            data(width, 22),
            data(width * batch, 23)
                .iter()
                .map(|x| 3.0 * x)
                .collect::<Vec<_>>(),
            data(width * batch, 24),
        );
        let dense = Dense { width };
        let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
        for act in Activation::ALL {
            let step = dense.linearize(act, 0.3, &theta);
            let wide = fused_outputs(&step, &u, &lam0);
            let narrow = fused::tests_run_avx2(|| fused_outputs(&step, &u, &lam0));
            for (i, (a, n)) in bits(&wide).iter().zip(&bits(&narrow)).enumerate() {
                assert_eq!(a, n, "output {i}, w={width} {act}");
            }
            // All-zero outputs would tell no variants apart.
            let nonzero = wide.iter().filter(|o| o.iter().any(|x| *x != 0.0)).count();
            assert_eq!(
                nonzero,
                wide.len(),
                "w={width} {act}: an output is all zero"
            );
        }
    }
}

/// The fused kernels step columns in groups; a column's results must not depend on the
/// group it falls in (the data groups of a run split the batch anywhere). Each column of a
/// batch of 37 (groups and a remainder) gives the bits it gives when stepped alone, and the
/// gradient is the in-order sum Σ_j s_j u_jᵀ, one fused multiply-add per term.
#[test]
fn fused_columns_give_the_same_bits_wherever_they_sit_in_the_batch() {
    let mut tested = 0;
    for width in [4, 8, 16] {
        if !fused::supported(width) {
            continue;
        }
        let batch = 37;
        let (k, b, u, lam0) = (
            data(width * width, 11),
            data(width, 12),
            data(width * batch, 13),
            data(width * batch, 14),
        );
        let h = 0.3;
        let dense = Dense { width };
        let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
        for act in Activation::ALL {
            let step = dense.linearize(act, h, &theta);
            let mut scratch = Scratch::new(width * batch);
            let (mut next, mut d) = (vec![0.0; width * batch], vec![0.0; width * batch]);
            step.forward_keeping(&u, &mut next, &mut d, &mut scratch);
            let mut lam = lam0.clone();
            let mut g = vec![0.0; dense.param_len()];
            step.adjoint(&u, &mut lam, &mut scratch, Some(&mut g));
            for j in 0..batch {
                let col = j * width..(j + 1) * width;
                let mut one = Scratch::new(width);
                let (mut next_j, mut d_j) = (vec![0.0; width], vec![0.0; width]);
                step.forward_keeping(&u[col.clone()], &mut next_j, &mut d_j, &mut one);
                assert_eq!(next_j, next[col.clone()], "forward w={width} {act} j={j}");
                assert_eq!(d_j, d[col.clone()], "derivative w={width} {act} j={j}");
                let mut lam_j = lam0[col.clone()].to_vec();
                step.adjoint(&u[col.clone()], &mut lam_j, &mut one, None);
                assert_eq!(lam_j, lam[col], "adjoint w={width} {act} j={j}");
            }
            let mut gk_ref = vec![0.0; width * width];
            let mut gb_ref = vec![0.0; width];
            for j in 0..batch {
                let s: Vec<f64> = (0..width)
                    .map(|r| d[j * width + r] * h * lam0[j * width + r])
                    .collect();
                for l in 0..width {
                    for r in 0..width {
                        let acc = &mut gk_ref[r + l * width];
                        *acc = s[r].mul_add(u[j * width + l], *acc);
                    }
                }
                for (acc, sr) in gb_ref.iter_mut().zip(&s) {
                    *acc += sr;
                }
            }
            assert_eq!(g[..width * width], gk_ref[..], "∂J/∂K w={width} {act}");
            assert_eq!(g[width * width..], gb_ref[..], "∂J/∂b w={width} {act}");
            tested += 1;
        }
    }
    if tested == 0 {
        eprintln!("inconclusive: no fused kernel on this CPU");
    }
}
