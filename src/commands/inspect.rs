//! `layerpar inspect FILE`: what a checkpoint holds.

use anyhow::Result;
use std::path::Path;

pub fn run(path: &Path) -> Result<()> {
    let c = checkpoint::read(path)?;
    let s = c.shape;
    let o = &c.optimizer;
    println!("checkpoint {}", path.display());
    println!(
        "format version {}, checksum {:#018x} (verified)",
        checkpoint::FORMAT_VERSION,
        c.checksum()
    );
    println!("iteration {}, nested level {}", c.iteration, c.level);
    println!(
        "network: {} inputs, width {}, {} hidden layers, {} classes, opening {}; {} parameters",
        s.input,
        s.width,
        s.layers,
        s.classes,
        if s.opening_params {
            "activate"
        } else {
            "replicate"
        },
        c.params.len()
    );
    if let Some(cv) = s.conv {
        if c.blocks.is_empty() {
            println!("convolutional: {cv}");
        } else {
            println!("convolutional: {cv:#}");
        }
    }
    let ranges = c.block_ranges();
    for (i, b) in c.blocks.iter().enumerate() {
        let last = i + 1 == c.blocks.len();
        let what = match b.conv {
            Some(cv) if last => cv.to_string(),
            Some(cv) => format!("{cv:#}"),
            None => String::new(),
        };
        println!(
            "ODE block {} of {}: {what}, {} hidden layers, {} classes; {} parameters",
            i + 2,
            c.blocks.len() + 1,
            b.layers,
            b.classes,
            ranges[i + 1].len()
        );
    }
    let norm = c.params.iter().map(|x| x * x).sum::<f64>().sqrt();
    println!("parameter norm {norm:.6e}");
    println!(
        "optimizer {}: {} L-BFGS pairs, Adam moments {}, Adam steps {}, SGD velocity {}",
        o.kind,
        o.lbfgs_s.len(),
        if o.adam_m.is_empty() {
            "none"
        } else {
            "stored"
        },
        o.adam_t,
        if o.sgd_velocity.is_empty() {
            "none"
        } else {
            "stored"
        }
    );
    if c.rng.batch_order.is_empty() {
        println!("mini-batch state: none (full batch)");
    } else {
        println!(
            "mini-batch state: order of {} examples, generator at word {}",
            c.rng.batch_order.len(),
            c.rng.word_pos
        );
    }
    println!(
        "history: {} rows, columns {}",
        c.history.rows.len(),
        c.history.columns.join(",")
    );
    if let Some(r) = c.history.rows.last() {
        let cells: Vec<String> = c
            .history
            .columns
            .iter()
            .zip(r)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("last row: {}", cells.join(" "));
    }
    println!("configuration:");
    for line in c.config.lines() {
        println!("  {line}");
    }
    Ok(())
}
