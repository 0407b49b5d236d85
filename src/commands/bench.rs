//! `layerpar bench`: the performance table's cases ([`crate::bench`]), each built from the
//! configuration machinery and timed on the MPI job's ranks; rank 0 prints one line per
//! case and, when both wide cases ran, the MGRIT work overhead. The `conv-step` case times
//! the convolution kernels on rank 0 alone, one line per configuration.

use super::agree;
use crate::bench::{self, Case, Measured, Unit};
use crate::parallel::Parallel;
use crate::train::{BlockNet, DistNet, Problem};
use anyhow::{bail, Result};
use mgrit::MpiComm;
use odenet::Layer;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The case to run: wide-serial, wide-mgrit3, peaks-adam, all (those three), or
    /// conv-step (the convolution kernels alone).
    #[arg(long, default_value = "all")]
    pub case: String,
    /// Timed repetitions per case (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Override one key of every case's configuration (repeatable; applied after the
    /// case's own settings), e.g. --set network.layers=64.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Examples per batch of the conv-step case (the other cases take theirs from the
    /// configuration).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
}

pub fn run(par: &Parallel, args: &BenchArgs) -> Result<()> {
    let cases = agree(
        par,
        (|| {
            if args.repeat == 0 {
                bail!("--repeat must be ≥ 1");
            }
            if args.batch == 0 {
                bail!("--batch must be ≥ 1");
            }
            bench::select(&args.case)
        })(),
    )?;
    if par.is_root() {
        println!(
            "layerpar bench: {} MPI rank{}, one thread per rank, float64, elementwise kernels {}; {} repetition{} per case after one warm-up (times: the slowest rank's)",
            par.size(),
            if par.size() == 1 { "" } else { "s" },
            odenet::activation::isa(),
            args.repeat,
            if args.repeat == 1 { "" } else { "s" }
        );
    }
    let mut done: Vec<Measured> = Vec::new();
    for case in cases {
        if case.unit == Unit::Step {
            // The kernels alone, on rank 0; the other ranks have nothing to time.
            if par.is_root() {
                for (channels, side) in bench::CONV_CONFIGS {
                    let m = bench::time_conv_step(channels, side, args.batch, args.repeat);
                    println!("{}", m.line());
                }
            }
            continue;
        }
        let m = run_case(par, args, case)?;
        if par.is_root() {
            println!("{}", m.line());
        }
        done.push(m);
    }
    let find = |name: &str| done.iter().find(|m| m.case.name == name);
    if let (Some(s), Some(g), true) = (find("wide-serial"), find("wide-mgrit3"), par.is_root()) {
        if let Some(line) = bench::overhead_line(s, g) {
            println!("{line}");
        }
    }
    Ok(())
}

/// Builds one case as `layerpar train` would (its settings, then --set), times it and
/// returns its measurements (on every rank).
fn run_case(par: &Parallel, args: &BenchArgs, case: Case) -> Result<Measured> {
    let sets: Vec<String> = case
        .settings
        .iter()
        .map(|s| s.to_string())
        .chain(args.set.iter().cloned())
        .collect();
    let config = super::root_config(par, || crate::config::load(None, &sets))?;
    let setup = (|| -> Result<_> {
        if config.parallel.data_groups > 1 {
            bail!(
                "config key `parallel.data_groups` = {}: `layerpar bench` times one row of layer-parallel ranks; set it to 1",
                config.parallel.data_groups
            );
        }
        if !config.network.blocks.is_empty() {
            bail!("config key `network.blocks`: `layerpar bench` times a network of one ODE block; remove network.blocks");
        }
        if config.nested.levels > 1 {
            bail!(
                "config key `nested.levels` = {}: `layerpar bench` times one network; set it to 1",
                config.nested.levels
            );
        }
        let (train, val) = crate::data::load(&config)?;
        crate::limits::check_network(
            &config,
            crate::model::DataShape::of(&train),
            train.len(),
            par.size(),
        )?;
        if config.network.layers < par.size() {
            bail!(
                "{} ranks for {} hidden layers: layer-parallel runs need at most one rank per layer (network.layers ≥ ranks)",
                par.size(),
                config.network.layers
            );
        }
        let net = crate::model::build_network(&config, crate::model::DataShape::of(&train))?;
        Ok((train, val, net))
    })();
    let (train, val, net) = agree(par, setup)?;
    let comm = MpiComm::new(par.world());
    let basis = config.spline_basis()?;
    let settings = crate::model::solver_settings(&config);
    let block: BlockNet = agree(
        par,
        BlockNet::new(net.clone(), &comm, settings, basis).map_err(anyhow::Error::from),
    )?;
    let mut dist = DistNet::single(block);
    dist.keep_derivatives(config.mgrit.keep_derivatives);
    let global = crate::model::initial_parameters(&config, &net);
    let theta = dist.extract(&global);
    let (width, layers) = (net.shape().width, net.shape().layers);
    let layer = net.layer();
    let batch = train.len();
    // The reference dgemm on rank 0 alone, the other ranks waiting.
    let dgemm = if par.is_root() {
        bench::dgemm_gflops(width, batch, 15)
    } else {
        0.0
    };
    let dgemm = bench::slowest(&dist.comm, &[dgemm])[0];
    let kept = config.mgrit.keep_derivatives;
    let (times, flops, calls, kernel_share) = match case.unit {
        Unit::Evaluation => {
            let (x, y) = (&train.features, train.y());
            bench::time_evaluations(&mut dist.blocks[0], &theta, x, y, args.repeat, kept)
        }
        Unit::Iteration => {
            let problem = Problem { net, train, val };
            let r = bench::time_training(par, &config, &mut dist, &problem, theta, args.repeat);
            agree(par, r)?
        }
        Unit::Step => unreachable!("the conv-step case is timed by bench::time_conv_step"),
    };
    // The exact serial sweep's forward + backward: one forward and one adjoint step per layer.
    let n = layers as u64;
    let serial_flops = bench::products(&[n], &[n], layers, 1, kept) * layer.step_flops(batch) / 4.0;
    Ok(Measured {
        case,
        ranks: par.size(),
        width,
        layers,
        batch,
        levels: dist.levels(),
        times,
        flops,
        calls,
        serial_flops,
        dgemm,
        kernel_share,
    })
}
