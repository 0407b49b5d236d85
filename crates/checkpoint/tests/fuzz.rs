//! Fuzz-style test of the checkpoint reader: a valid checkpoint with random bit flips, byte
//! changes and truncations (a seeded generator, a bounded number of inputs and a time limit).
//! Every input must read back as exactly the original or be refused with one line naming the
//! file: no panic, no hang, no silently different checkpoint.

use checkpoint::{read, write, Checkpoint, History, NetShape, OptimizerState, RngState};
use odenet::{ConvShape, Pool, Readout, Transition};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SplitMix64: small and seeded, enough to place mutations.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn sample(optimizer: &str) -> Checkpoint {
    let shape = NetShape {
        input: 2,
        width: 4,
        classes: 3,
        layers: 6,
        opening_params: true,
        hidden_sets: 6,
        classifier_params: true,
        time_scale: false,
        conv: None,
    };
    let len = shape.layout().len;
    let v = |s: f64| (0..len).map(|i| s * i as f64 - 0.75).collect::<Vec<f64>>();
    let mut o = OptimizerState {
        kind: optimizer.into(),
        ..Default::default()
    };
    match optimizer {
        "lbfgs" => {
            o.lbfgs_s = vec![v(0.5), v(0.25)];
            o.lbfgs_y = vec![v(-0.5), v(2.0)];
        }
        _ => {
            o.adam_m = v(0.125);
            o.adam_v = v(0.0625);
            o.adam_t = 4;
        }
    }
    Checkpoint {
        config: "seed = 1\n[network]\nlayers = 6\n".into(),
        iteration: 9,
        level: 0,
        shape,
        blocks: Vec::new(),
        params: v(1.5),
        optimizer: o,
        rng: RngState {
            seed: [3; 32],
            stream: 2,
            word_pos: 77,
            batch_order: vec![4, 1, 0, 3, 2],
        },
        history: History {
            columns: vec!["iter".into(), "loss".into()],
            rows: vec![vec![0.0, 2.5], vec![1.0, f64::NAN]],
        },
    }
}

/// A chain of two convolutional blocks: block 0 (1 → 2 channels of 4×4, no classes), block 1
/// (average pooling to 2×2, 2 → 3 channels, 3 classes).
fn chain_sample() -> Checkpoint {
    let conv = |in_channels, channels, size, transition| ConvShape {
        in_channels,
        channels,
        height: size,
        width: size,
        kernel_h: 3,
        kernel_w: 3,
        readout: Readout::GlobalAverage,
        transition,
    };
    let b0 = NetShape {
        input: 16,
        width: 32,
        classes: 0,
        layers: 2,
        opening_params: true,
        hidden_sets: 2,
        classifier_params: true,
        time_scale: false,
        conv: Some(conv(1, 2, 4, None)),
    };
    let b1 = NetShape {
        input: 32,
        width: 12,
        classes: 3,
        conv: Some(conv(
            2,
            3,
            2,
            Some(Transition {
                pool: Some(Pool::Average),
                in_height: 4,
                in_width: 4,
            }),
        )),
        ..b0
    };
    let mut c = sample("adam");
    c.shape = b0;
    c.blocks = vec![b1];
    let len = b0.layout().len + b1.layout().len;
    let v = |s: f64| (0..len).map(|i| s * i as f64 - 0.75).collect::<Vec<f64>>();
    c.params = v(1.5);
    c.optimizer.adam_m = v(0.125);
    c.optimizer.adam_v = v(0.0625);
    c
}

#[test]
fn mutated_checkpoints_read_back_exactly_or_are_refused_in_one_line() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Gen(0x1234_5678);
        let (mut accepted, mut total) = (0usize, 0usize);
        let start = Instant::now();
        for kind in ["lbfgs", "adam", "chain"] {
            let orig = match kind {
                "chain" => chain_sample(),
                _ => sample(kind),
            };
            let good = dir.path().join(format!("{kind}.h5"));
            write(&good, &orig).unwrap();
            let valid = std::fs::read(&good).unwrap();
            for i in 0..1500 {
                if start.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let mut b = valid.clone();
                match i % 4 {
                    0 | 1 => {
                        for _ in 0..1 + g.below(3) {
                            let at = g.below(b.len());
                            b[at] ^= 1 << g.below(8);
                        }
                    }
                    2 => {
                        let at = g.below(b.len());
                        b[at] = g.next() as u8;
                    }
                    _ => b.truncate(g.below(b.len())),
                }
                // A new name for each input: HDF5 keeps no state between them.
                let name = format!("m{kind}{i}.h5");
                let p = dir.path().join(&name);
                std::fs::write(&p, &b).unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                total += 1;
                match std::panic::catch_unwind(|| read(&p)) {
                    Err(_) => panic!("read panicked on {kind} mutation {i}"),
                    Ok(Ok(back)) => {
                        // Accepted: it must be the same checkpoint (a flip in unused space).
                        assert_eq!(back.checksum(), orig.checksum(), "{kind} mutation {i}");
                        assert_eq!(back.config, orig.config, "{kind} mutation {i}");
                        accepted += 1;
                    }
                    Ok(Err(e)) => {
                        let e = e.to_string();
                        assert!(!e.contains('\n'), "{kind} mutation {i}: {e}");
                        assert!(e.contains(&name), "{kind} mutation {i}: {e}");
                    }
                }
                std::fs::remove_file(&p).unwrap();
            }
        }
        let _ = tx.send((total, accepted));
    });
    match rx.recv_timeout(Duration::from_secs(180)) {
        Ok((total, accepted)) => {
            eprintln!("checkpoint fuzz: {total} inputs, {accepted} read back unchanged")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "input {} has not finished within 180 s",
            count.load(Ordering::SeqCst)
        ),
        Err(_) => panic!("failed at input {}", count.load(Ordering::SeqCst)),
    }
}
