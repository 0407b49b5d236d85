//! Data × layer parallelism rests on this: every kernel that the forward and adjoint
//! propagations apply to a batch computes each example's column by itself, so an example's
//! state and adjoint come out with the same bits whatever the batch it sits in and wherever in
//! it (a row of a D × L grid holds a different part of the batch for each D).

use odenet::{Activation, Closing, Loss, Network, Opening, Regularization, Scratch, Shape, Step};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// The batch of `batch` examples cut at `cuts`, as column ranges.
fn pieces(batch: usize, cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut edges = vec![0];
    edges.extend_from_slice(cuts);
    edges.push(batch);
    edges.windows(2).map(|w| w[0]..w[1]).collect()
}

#[test]
fn every_kernel_computes_each_example_by_itself() {
    let batch = 13;
    // Widths with fused (AVX2) kernels and with GEMM; odd offsets and sizes of the pieces.
    for width in [4usize, 8, 16, 24, 40] {
        for act in [Activation::SmoothRelu, Activation::Tanh] {
            let shape = Shape {
                opening: Opening::Activate,
                closing: Closing::Affine,
                ..Shape::dense(3, width, 5, 6)
            };
            let net = Network::new(
                shape,
                act,
                1.0,
                Loss::CrossEntropy,
                Regularization::default(),
            );
            let theta_n = values(width * width + width, 1 + width as u64);
            let step = net.step(&theta_n, 0.1);
            let u = values(width * batch, 7);
            let lam = values(width * batch, 9);
            let mut scratch = Scratch::default();
            let whole = {
                let mut f = u.clone();
                step.forward_in_place(&mut f, &mut scratch);
                let mut l = lam.clone();
                step.adjoint(&u, &mut l, &mut scratch, None);
                (f, l)
            };
            let open = values(width * 3 + width, 3);
            let x = values(3 * batch, 5);
            let (mut u0, mut pre) = (vec![0.0; width * batch], vec![0.0; width * batch]);
            net.open(&open, &x, &mut u0, &mut pre);
            let class = values(5 * width + 5, 11);
            let mut logits = vec![0.0; 5 * batch];
            net.classify(&class, &u, &mut logits);
            for cuts in [&[1, 5, 6][..], &[4, 8, 12], &[3, 7], &[2]] {
                for r in pieces(batch, cuts) {
                    let c = r.start * width..r.end * width;
                    let mut f = u[c.clone()].to_vec();
                    step.forward_in_place(&mut f, &mut scratch);
                    assert_eq!(f, whole.0[c.clone()], "forward, width {width}, {r:?}");
                    let mut l = lam[c.clone()].to_vec();
                    step.adjoint(&u[c.clone()], &mut l, &mut scratch, None);
                    assert_eq!(l, whole.1[c.clone()], "adjoint, width {width}, {r:?}");
                    let n = r.len();
                    let (mut u0p, mut prep) = (vec![0.0; width * n], vec![0.0; width * n]);
                    net.open(&open, &x[r.start * 3..r.end * 3], &mut u0p, &mut prep);
                    assert_eq!(u0p, u0[c.clone()], "opening, width {width}, {r:?}");
                    let mut z = vec![0.0; 5 * n];
                    net.classify(&class, &u[c.clone()], &mut z);
                    assert_eq!(z, logits[r.start * 5..r.end * 5], "classifier, {r:?}");
                }
            }
        }
    }
}
