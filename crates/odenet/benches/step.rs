//! One dense hidden layer: forward Euler step plus its adjoint with parameter gradients,
//! for widths 8, 64, 256, 512 and batch 1024. Throughput is reported in FLOP (8 w² B per
//! step and adjoint), so criterion's "elem/s" reads as FLOP/s; a GFLOP/s line is printed too.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use odenet::layer::{step_adjoint, step_flops, step_forward};
use odenet::Activation;
use std::hint::black_box;
use std::time::Instant;

fn data(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.2
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = 1024;
    let mut group = c.benchmark_group("dense_step_forward_adjoint");
    for width in [8usize, 64, 256, 512] {
        let k = data(width * width, 1);
        let b = data(width, 2);
        let u = data(width * batch, 3);
        let mut u_next = vec![0.0; width * batch];
        let mut z = vec![0.0; width * batch];
        let mut s = vec![0.0; width * batch];
        let mut lam = data(width * batch, 4);
        let mut gk = vec![0.0; width * width];
        let mut gb = vec![0.0; width];
        let act = Activation::SmoothRelu;
        let mut run = || {
            step_forward(act, 0.1, width, &k, &b, &u, &mut z, &mut u_next);
            step_adjoint(act, 0.1, width, &k, &b, &u, &mut lam, &mut z, &mut s, Some((&mut gk, &mut gb)));
            black_box(&lam);
        };
        // A direct GFLOP/s figure alongside criterion's statistics.
        let reps = (2e9 / step_flops(width, batch)).clamp(3.0, 2000.0) as usize;
        run();
        let t = Instant::now();
        for _ in 0..reps {
            run();
        }
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "width {width:>4}, batch {batch}: {:.3} ms per step+adjoint, {:.2} GFLOP/s",
            secs * 1e3,
            step_flops(width, batch) / secs / 1e9
        );
        group.throughput(Throughput::Elements(step_flops(width, batch) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(width), &width, |bch, _| bch.iter(&mut run));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
