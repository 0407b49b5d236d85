//! One dense hidden layer: forward Euler step plus its adjoint with parameter gradients,
//! for widths 4, 8, 16, 64, 256, 512 and batch 1024. Throughput is reported in FLOP (8 w² B per
//! step and adjoint), so criterion's "elem/s" reads as FLOP/s; a GFLOP/s line is printed too.
//!
//! `layer` is the library kernel; `gemm` is the same step written out as four GEMMs, a
//! baseline that shows the kernel's overhead.
//!
//! With tanh (`dense_step_tanh`), three figures come from the same run, each as min / median /
//! max over 15 timed loops: the library step (forward + adjoint with gradient), the same step
//! as four GEMMs with a libm `tanh` call per element (the element-wise passes before the
//! vectorized tanh; for w ≥ 32 exactly the code the library ran before), and one
//! w × w · w × B dgemm, the reference ratio; and the step as training runs it with kept
//! derivatives (the forward keeps σ'(Z), the adjoint takes it: three products), whose rate
//! 3 · t_dgemm / t_step is the share of the dgemm's rate it reaches. `activation_pass` times σ and σ' over 64 × 1024
//! values in [−4, 4]: libm loops against the library's passes, in ns per element.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use odenet::layer::{Dense, Layer, Scratch, Step};
use odenet::linalg::{add_row_sums, broadcast_columns, direct, gemm, gemm_direct, gemm_packed};
use odenet::Activation;
use std::hint::black_box;
use std::time::Instant;

fn data(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.2
        })
        .collect()
}

struct Case {
    width: usize,
    k: Vec<f64>,
    b: Vec<f64>,
    u: Vec<f64>,
    u_next: Vec<f64>,
    z: Vec<f64>,
    s: Vec<f64>,
    lam: Vec<f64>,
    gk: Vec<f64>,
    gb: Vec<f64>,
    /// θ_n = (K, b) as the layer kernel reads it, its gradient block and scratch.
    theta: Vec<f64>,
    grad: Vec<f64>,
    scratch: Scratch,
}

impl Case {
    fn new(width: usize, batch: usize) -> Self {
        Case {
            width,
            k: data(width * width, 1),
            b: data(width, 2),
            u: data(width * batch, 3),
            u_next: vec![0.0; width * batch],
            z: vec![0.0; width * batch],
            s: vec![0.0; width * batch],
            lam: data(width * batch, 4),
            gk: vec![0.0; width * width],
            gb: vec![0.0; width],
            theta: data(width * width, 1)
                .into_iter()
                .chain(data(width, 2))
                .collect(),
            grad: vec![0.0; width * width + width],
            scratch: Scratch::new(width * batch),
        }
    }

    fn layer(&mut self) {
        self.layer_with(Activation::SmoothRelu);
    }

    fn layer_with(&mut self, act: Activation) {
        let dense = Dense { width: self.width };
        let step = dense.linearize(act, 0.1, &self.theta);
        step.forward(&self.u, &mut self.u_next, &mut self.scratch);
        step.adjoint(
            &self.u,
            &mut self.lam,
            &mut self.scratch,
            Some(&mut self.grad),
        );
        black_box(&self.lam);
    }

    /// The step as training runs it with kept derivatives: the forward keeps D = σ'(Z) and
    /// the adjoint (with the gradient) takes it, three matrix products in all.
    fn layer_kept_with(&mut self, act: Activation) {
        let dense = Dense { width: self.width };
        let step = dense.linearize(act, 0.1, &self.theta);
        step.forward_keeping(&self.u, &mut self.u_next, &mut self.z, &mut self.scratch);
        step.adjoint_given(
            &self.u,
            &self.z,
            None,
            &mut self.lam,
            &mut self.scratch,
            Some(&mut self.grad),
        );
        black_box(&self.lam);
    }

    fn gemms(&mut self) {
        let act = Activation::SmoothRelu;
        self.gemms_with(|z| act.value(z), |z| act.derivative(z));
    }

    /// The step as four GEMMs and two element-wise passes with the given σ and σ'.
    fn gemms_with(&mut self, value: impl Fn(f64) -> f64, derivative: impl Fn(f64) -> f64) {
        let (w, batch, h) = (self.width, self.u.len() / self.width, 0.1);
        broadcast_columns(&self.b, &mut self.z);
        gemm(
            w,
            w,
            batch,
            1.0,
            &self.k,
            false,
            &self.u,
            false,
            1.0,
            &mut self.z,
        );
        for ((n, &x), &z) in self.u_next.iter_mut().zip(&self.u).zip(&self.z) {
            *n = x + h * value(z);
        }
        broadcast_columns(&self.b, &mut self.z);
        gemm(
            w,
            w,
            batch,
            1.0,
            &self.k,
            false,
            &self.u,
            false,
            1.0,
            &mut self.z,
        );
        for ((s, &z), &l) in self.s.iter_mut().zip(&self.z).zip(&self.lam) {
            *s = derivative(z) * h * l;
        }
        gemm(
            w,
            batch,
            w,
            1.0,
            &self.s,
            false,
            &self.u,
            true,
            1.0,
            &mut self.gk,
        );
        add_row_sums(w, &self.s, &mut self.gb);
        gemm(
            w,
            w,
            batch,
            1.0,
            &self.k,
            true,
            &self.s,
            false,
            1.0,
            &mut self.lam,
        );
        black_box(&self.lam);
    }

    /// Z ← K U + β Z: one dgemm of the step's shape (w × w times w × B). β = 0 is the
    /// packed path (the reference); β = 1 goes through `gemm`'s dispatch to the direct path
    /// where it serves, the other candidate for the best dgemm of the shape.
    fn dgemm(&mut self, beta: f64) {
        let (w, batch) = (self.width, self.u.len() / self.width);
        gemm(
            w,
            w,
            batch,
            1.0,
            &self.k,
            false,
            &self.u,
            false,
            beta,
            &mut self.z,
        );
        black_box(&self.z);
    }
}

/// Seconds per call of `f` as (min, median, max) over 15 timed loops of `reps` calls.
fn spread(mut f: impl FnMut(), reps: usize) -> [f64; 3] {
    f();
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    [t[0], t[t.len() / 2], t[t.len() - 1]]
}

fn show(t: [f64; 3], scale: f64, unit: &str) -> String {
    format!(
        "{:.3}/{:.3}/{:.3} {unit}",
        t[0] * scale,
        t[1] * scale,
        t[2] * scale
    )
}

/// σ and σ' alone over 64 × 1024 values: libm loops against the library's passes.
fn activation_pass(c: &mut Criterion) {
    let n = 64 * 1024;
    let x: Vec<f64> = data(n, 7).iter().map(|v| v * 40.0).collect();
    let mut out = vec![0.0; n];
    let reps = 50;
    let ns = 1e9 / n as f64;
    println!(
        "activation pass over {n} values in [-4, 4] ({}), ns per element min/median/max:",
        odenet::activation::isa()
    );
    let libm = spread(
        || {
            for (o, &v) in out.iter_mut().zip(&x) {
                *o = v.tanh();
            }
            black_box(&out);
        },
        reps,
    );
    let ours = spread(
        || {
            odenet::activation::tanh_slice(&x, &mut out);
            black_box(&out);
        },
        reps,
    );
    // The four-lane variant, for the ratio to the eight-lane one on an AVX-512 machine.
    let ours_avx2 = spread(
        || {
            odenet::activation::apply_avx2(Activation::Tanh, &x, &mut out);
            black_box(&out);
        },
        reps,
    );
    let libm_d = spread(
        || {
            for (o, &v) in out.iter_mut().zip(&x) {
                let t = v.tanh();
                *o = 1.0 - t * t;
            }
            black_box(&out);
        },
        reps,
    );
    let ours_d = spread(
        || {
            odenet::activation::tanh_derivative_slice(&x, &mut out);
            black_box(&out);
        },
        reps,
    );
    println!(
        "  tanh:  libm {}  tanh_slice {}  (libm/ours at the median {:.2})",
        show(libm, ns, "ns"),
        show(ours, ns, "ns"),
        libm[1] / ours[1]
    );
    println!(
        "  tanh:  the avx2+fma variant {}  (avx2/ours at the median {:.2})",
        show(ours_avx2, ns, "ns"),
        ours_avx2[1] / ours[1]
    );
    println!(
        "  tanh': libm {}  tanh_derivative_slice {}  (libm/ours at the median {:.2})",
        show(libm_d, ns, "ns"),
        show(ours_d, ns, "ns"),
        libm_d[1] / ours_d[1]
    );
    for act in [Activation::Relu, Activation::SmoothRelu] {
        let t = spread(
            || {
                odenet::activation::apply(act, &x, &mut out);
                black_box(&out);
            },
            reps,
        );
        println!("  {act}: apply {}", show(t, ns, "ns"));
    }
    let mut group = c.benchmark_group("activation_pass");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("libm_tanh", |b| {
        b.iter(|| {
            for (o, &v) in out.iter_mut().zip(&x) {
                *o = v.tanh();
            }
            black_box(&out);
        })
    });
    group.bench_function("tanh_slice", |b| {
        b.iter(|| {
            odenet::activation::tanh_slice(&x, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

/// The step with tanh: library kernel, four GEMMs with libm passes, and one dgemm.
fn tanh_step(c: &mut Criterion) {
    let batch = 1024;
    let mut group = c.benchmark_group("dense_step_tanh");
    for width in [4usize, 8, 16, 64] {
        let flops = Dense { width }.step_flops(batch);
        let reps = (1e8 / flops).clamp(2.0, 2000.0) as usize;
        let mut case = Case::new(width, batch);
        let ms = 1e3;
        let t_layer = spread(|| case.layer_with(Activation::Tanh), reps);
        let t_kept = spread(|| case.layer_kept_with(Activation::Tanh), reps);
        let t_libm = spread(
            || case.gemms_with(f64::tanh, |z| 1.0 - z.tanh() * z.tanh()),
            reps,
        );
        let t_smooth = spread(|| case.layer_with(Activation::SmoothRelu), reps);
        let t_dgemm = spread(|| case.dgemm(0.0), reps);
        let t_accumulating = spread(|| case.dgemm(1.0), reps);
        let t_best = t_dgemm[1].min(t_accumulating[1]);
        println!(
            "tanh width {width:>3}, batch {batch}, ms min/median/max: layer {}; GEMMs + libm passes {}; layer with smoothrelu {}; one dgemm {}",
            show(t_layer, ms, ""),
            show(t_libm, ms, ""),
            show(t_smooth, ms, ""),
            show(t_dgemm, ms, ""),
        );
        println!(
            "    medians: layer / dgemm {:.2}, GEMMs+libm / dgemm {:.2}, layer(smoothrelu) / dgemm {:.2}, GEMMs+libm / layer {:.2}",
            t_layer[1] / t_dgemm[1],
            t_libm[1] / t_dgemm[1],
            t_smooth[1] / t_dgemm[1],
            t_libm[1] / t_layer[1]
        );
        println!(
            "    kept derivatives (forward keeping σ'(Z), adjoint taking it; 3 products): {} ms, step / dgemm {:.2}, rate 3·dgemm/step {:.2} of the dgemm's",
            show(t_kept, ms, ""),
            t_kept[1] / t_dgemm[1],
            3.0 * t_dgemm[1] / t_kept[1]
        );
        println!(
            "    best dgemm: packed (C = K U) {} ms, gemm's dispatch (C += K U) {} ms; kept-derivative rate 3·best/step {:.2}",
            show(t_dgemm, ms, ""),
            show(t_accumulating, ms, ""),
            3.0 * t_best / t_kept[1]
        );
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_with_input(BenchmarkId::new("layer", width), &width, |bch, _| {
            bch.iter(|| case.layer_with(Activation::Tanh))
        });
    }
    group.finish();
}

/// A dense step's three accumulating products, C += op(A)·op(B), through the packed GEMM and
/// through the direct path, at batches 1–1024: the figures behind
/// `linalg::direct_pays`, at widths 32–256. Forward Z += K U (w × w × B), adjoint Λ += Kᵀ S (w × w × B, A
/// transposed), gradient G += S Uᵀ (w × B × w, B transposed).
fn gemm_paths(c: &mut Criterion) {
    if !direct::available(32) {
        println!("gemm_paths: no AVX-512 here, the direct path never runs");
        return;
    }
    let mut group = c.benchmark_group("gemm_paths");
    for w in [32usize, 64, 128, 256] {
        for batch in [1usize, 4, 16, 32, 64, 128, 256, 1024] {
            let k = data(w * w, 1);
            let u = data(w * batch, 2);
            let s = data(w * batch, 3);
            let mut out = vec![0.0; w * w.max(batch)];
            let reps = (2e7 / (2 * w * w * batch) as f64).clamp(2.0, 20000.0) as usize;
            let mut line = format!("w {w:>3}, batch {batch:>4}, µs median packed / direct:");
            for (name, m, kk, n, ta, tb) in [
                ("forward", w, w, batch, false, false),
                ("adjoint", w, w, batch, true, false),
                ("gradient", w, batch, w, false, true),
            ] {
                let (a, b) = match name {
                    "forward" => (&k, &u),
                    "adjoint" => (&k, &s),
                    _ => (&s, &u),
                };
                let c = &mut out[..m * n];
                let t_packed = spread(
                    || {
                        gemm_packed(m, kk, n, 1.0, a, ta, b, tb, 1.0, c);
                        black_box(&c);
                    },
                    reps,
                );
                let t_direct = spread(
                    || {
                        gemm_direct(m, kk, n, a, ta, b, tb, c);
                        black_box(&c);
                    },
                    reps,
                );
                line += &format!(
                    "  {name} {:.2} / {:.2} ({:.2}×)",
                    t_packed[1] * 1e6,
                    t_direct[1] * 1e6,
                    t_packed[1] / t_direct[1]
                );
            }
            println!("{line}");
        }
    }
    let (w, batch) = (64, 16);
    let (k, u) = (data(w * w, 1), data(w * batch, 2));
    let mut z = vec![0.0; w * batch];
    group.throughput(Throughput::Elements((2 * w * w * batch) as u64));
    group.bench_function("forward_w64_b16", |bch| {
        bch.iter(|| gemm(w, w, batch, 1.0, &k, false, &u, false, 1.0, &mut z))
    });
    group.finish();
}

/// Best of 7 timed loops, in seconds per call.
fn best_time(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn bench(c: &mut Criterion) {
    let batch = 1024;
    let mut group = c.benchmark_group("dense_step_forward_adjoint");
    for width in [4usize, 8, 16, 64, 256, 512] {
        let flops = Dense { width }.step_flops(batch);
        let reps = (2e8 / flops).clamp(2.0, 2000.0) as usize;
        let mut case = Case::new(width, batch);
        let t_layer = best_time(|| case.layer(), reps);
        let t_gemm = best_time(|| case.gemms(), reps);
        println!(
            "width {width:>4}, batch {batch}: layer {:.3} ms = {:.2} GFLOP/s;  4 GEMMs {:.3} ms = {:.2} GFLOP/s",
            t_layer * 1e3,
            flops / t_layer / 1e9,
            t_gemm * 1e3,
            flops / t_gemm / 1e9
        );
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_with_input(BenchmarkId::new("layer", width), &width, |bch, _| {
            bch.iter(|| case.layer())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, activation_pass, tanh_step, gemm_paths);
criterion_main!(benches);
