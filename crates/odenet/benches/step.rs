//! One dense hidden layer: forward Euler step plus its adjoint with parameter gradients,
//! for widths 4, 8, 16, 64, 256, 512 and batch 1024. Throughput is reported in FLOP (8 w² B per
//! step and adjoint), so criterion's "elem/s" reads as FLOP/s; a GFLOP/s line is printed too.
//!
//! `layer` is the library kernel; `gemm` is the same step written out as four GEMMs, a
//! baseline that shows the kernel's overhead.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use odenet::layer::{Dense, Layer, Scratch, Step};
use odenet::linalg::{add_row_sums, broadcast_columns, gemm};
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
        let dense = Dense { width: self.width };
        let step = dense.linearize(Activation::SmoothRelu, 0.1, &self.theta);
        step.forward(&self.u, &mut self.u_next, &mut self.scratch);
        step.adjoint(
            &self.u,
            &mut self.lam,
            &mut self.scratch,
            Some(&mut self.grad),
        );
        black_box(&self.lam);
    }

    fn gemms(&mut self) {
        let act = Activation::SmoothRelu;
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
            *n = x + h * act.value(z);
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
            *s = act.derivative(z) * h * l;
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

criterion_group!(benches, bench);
criterion_main!(benches);
