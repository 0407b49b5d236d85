//! Sizes checked against the memory this process can use, before anything is allocated: a
//! configuration such as `network.layers = 10^12` is refused with one line naming its keys
//! instead of an aborting allocation.
//!
//! The limit is the machine's physical memory, or less where a limit on the address space
//! (`ulimit -v`) or a cgroup (v2 `memory.max`, as under Slurm or a container) is lower. The
//! estimates count the largest arrays only (the data, the parameter vector with the
//! optimizer's memory, the layer states of one rank), in 128-bit arithmetic, so that no size
//! overflows; a run that passes may still need more memory than the estimate.

use crate::config::{Config, DataKind, OptimizerKind};
use anyhow::{bail, Result};

/// Bytes of memory this process may use at most (see the module documentation).
pub fn available_memory() -> u128 {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mut limit = if pages > 0 && page > 0 {
        pages as u128 * page as u128
    } else {
        u128::MAX
    };
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0
        && rl.rlim_cur != libc::RLIM_INFINITY
    {
        limit = limit.min(rl.rlim_cur as u128);
    }
    if let Some(c) = cgroup_limit() {
        limit = limit.min(c);
    }
    limit
}

/// The cgroup v2 memory limit of this process, if it has one.
fn cgroup_limit() -> Option<u128> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = groups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let max =
        std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim_end())).ok()?;
    max.trim().parse().ok()
}

/// A byte count as a short human-readable size (binary units).
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Fails with `what` if `bytes` exceed `limit`.
fn fits(bytes: u128, limit: u128, what: impl FnOnce() -> String) -> Result<()> {
    if bytes > limit {
        bail!(
            "{} need {}, more than the {} of memory this process can use (sizes are checked before anything is allocated)",
            what(),
            human(bytes),
            human(limit)
        );
    }
    Ok(())
}

const F64: u128 = 8;

/// The generated data (Peaks: 2 features and a label per example) against `limit`.
pub fn check_data_within(config: &Config, limit: u128) -> Result<()> {
    let d = &config.data;
    if d.kind != DataKind::Peaks {
        // Files: the data crate checks their sizes against the file.
        return Ok(());
    }
    let per_example = 3 * F64;
    for (key, n) in [
        ("data.train_size", d.train_size),
        ("data.val_size", d.val_size),
    ] {
        fits(n as u128 * per_example, limit, || {
            format!("config key `{key}` = {n}: its Peaks examples")
        })?;
    }
    fits(
        (d.train_size as u128 + d.val_size as u128) * per_example,
        limit,
        || {
            format!(
                "config keys `data.train_size` = {} and `data.val_size` = {}: the Peaks examples",
                d.train_size, d.val_size
            )
        },
    )
}

/// [`check_data_within`] the memory this process can use.
pub fn check_data(config: &Config) -> Result<()> {
    check_data_within(config, available_memory())
}

/// The parameter vector (with the optimizer's memory) and one rank's layer states of the
/// configured network on data with `input` features, `classes` classes, images of
/// (channels, height, width) `image` (convolutional networks) and `examples` training
/// examples, on `ranks` ranks, against `limit`.
pub fn check_network_within(
    config: &Config,
    input: usize,
    classes: usize,
    image: Option<[usize; 3]>,
    examples: usize,
    ranks: usize,
    limit: u128,
) -> Result<()> {
    let n = &config.network;
    let layers = n.layers as u128;
    let (input, classes) = (input as u128, classes as u128);
    let m = |a: u128, b: u128| a.saturating_mul(b);
    // State values per example w, parameters per hidden set, opening and classifier weights.
    let (w, per_set, open, class) = match (n.kind, image) {
        (crate::config::NetworkKind::Conv, Some([cin, h, wd])) => {
            let c = n.channels as u128;
            let pixels = m(h as u128, wd as u128);
            let taps = if wd == 1 {
                n.kernel
            } else {
                n.kernel * n.kernel
            } as u128;
            let feat = match n.readout {
                odenet::Readout::Flatten => m(c, pixels),
                odenet::Readout::GlobalAverage => c,
            };
            (
                m(c, pixels),
                m(m(c, c), taps).saturating_add(c),
                m(m(c, cin as u128), taps),
                m(feat, classes),
            )
        }
        _ => {
            let w = n.width as u128;
            (w, m(w, w).saturating_add(w), m(input, w), m(w, classes))
        }
    };
    let sets = if config.is_spline() {
        config.controls.count as u128
    } else {
        layers
    };
    // The later ODE blocks of a chain (network.blocks): (layers, state values per example,
    // parameters per hidden set) of each, and their openings' 1×1 weights.
    let mut later = Vec::new();
    let mut class = class;
    if let (crate::config::NetworkKind::Conv, Some([_, h0, w0])) = (n.kind, image) {
        let (mut c, mut h, mut wd) = (n.channels as u128, h0, w0);
        let taps = if w0 == 1 {
            n.kernel
        } else {
            n.kernel * n.kernel
        } as u128;
        for b in &n.blocks {
            if b.pool != "none" {
                (h, wd) = odenet::conv::pooled_size(h, wd);
            }
            let ci = if b.channels == 0 {
                c
            } else {
                b.channels as u128
            };
            let pixels = m(h as u128, wd as u128);
            later.push((
                b.layers as u128,
                m(ci, pixels),
                m(m(ci, ci), taps).saturating_add(ci),
                m(ci, c),
            ));
            c = ci;
            let feat = match n.readout {
                odenet::Readout::Flatten => m(c, pixels),
                odenet::Readout::GlobalAverage => c,
            };
            class = m(feat, classes);
        }
    }
    // Saturating: 64-bit sizes multiply to more than 128 bits.
    let mut params = open
        .saturating_add(w)
        .saturating_add(m(sets, per_set))
        .saturating_add(class)
        .saturating_add(classes);
    for &(l, _, per, open) in &later {
        let s = if config.is_spline() { sets } else { l };
        params = params.saturating_add(m(s, per)).saturating_add(open);
    }
    // θ, the gradient, a trial point and the gathered checkpoint copy, plus the optimizer's
    // vectors: L-BFGS's m pairs and the spare one it forms the next in (2 each), its
    // direction and the trial gradient; Adam's two moments, SGD's velocity.
    let o = &config.optimizer;
    let memory = match o.kind {
        OptimizerKind::Lbfgs => 2 * o.lbfgs_memory as u128 + 4,
        OptimizerKind::Adam => 2,
        OptimizerKind::Sgd => 1,
    };
    let (set_keys, set_value) = if config.is_spline() {
        ("controls.count", config.controls.count)
    } else {
        ("network.layers", n.layers)
    };
    let (size_key, size) = match (n.kind, image) {
        (crate::config::NetworkKind::Conv, Some(_)) => ("network.channels", n.channels),
        _ => ("network.width", n.width),
    };
    let blocks = if later.is_empty() {
        ""
    } else {
        " and `network.blocks`"
    };
    fits(m(m(params, 4 + memory), F64), limit, || {
        format!(
            "config keys `{size_key}` = {size} and `{set_keys}` = {set_value}{blocks}: the {params} parameters with the optimizer's memory"
        )
    })?;
    // The states of one rank's layers (and the per-layer controls of spline runs), forward
    // and adjoint, and the kept derivatives σ'(Z_n) (mgrit.keep_derivatives), for a batch.
    let batch = match o.batch_size {
        0 => examples,
        b => b.min(examples),
    } as u128;
    let per_layer = 2 + u128::from(config.mgrit.keep_derivatives);
    let local = layers.div_ceil(ranks.max(1) as u128) + 1;
    let mut states = m(m(m(per_layer, local), w), batch).saturating_add(m(local, per_set));
    for &(l, wi, per, _) in &later {
        let local = l.div_ceil(ranks.max(1) as u128) + 1;
        states = states
            .saturating_add(m(m(m(per_layer, local), wi), batch))
            .saturating_add(m(local, per));
    }
    fits(m(states, F64), limit, || {
        format!(
            "config keys `network.layers` = {}{blocks} and `{size_key}` = {size} with batches of {batch} examples: the layer states of a rank",
            n.layers
        )
    })
}

/// [`check_network_within`] the memory this process can use.
pub fn check_network(
    config: &Config,
    data: crate::model::DataShape,
    examples: usize,
    ranks: usize,
) -> Result<()> {
    check_network_within(
        config,
        data.input,
        data.outputs,
        data.image,
        examples,
        ranks,
        available_memory(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sets: &[&str]) -> Config {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        crate::config::load_str("", "test", &sets).unwrap()
    }

    const GIB: u128 = 1 << 30;

    /// The later ODE blocks of a chain count: a deep later block is refused naming
    /// `network.blocks`, the same chain with a shallow one fits.
    #[test]
    fn the_later_blocks_of_a_chain_count() {
        let chain = |layers: &str| {
            config(&[
                "network.kind=conv",
                "network.layers=4",
                &format!("network.blocks=[{{layers = {layers}, channels = 16, pool = \"max\"}}]"),
            ])
        };
        let image = Some([1, 28, 28]);
        check_network_within(&chain("4"), 784, 10, image, 5000, 2, 8 * GIB).unwrap();
        let e = check_network_within(&chain("100000000"), 784, 10, image, 5000, 2, 128 * GIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`network.blocks`"), "{e}");
        assert!(!e.contains('\n'));
    }

    /// The kept derivatives (mgrit.keep_derivatives) are a third state per layer.
    #[test]
    fn kept_derivatives_count_as_a_third_state_per_layer() {
        let wide = [
            "network.width=64",
            "network.layers=256",
            "optimizer.kind=adam",
        ];
        let with = |keep: &str| {
            let mut sets = wide.to_vec();
            sets.push(keep);
            config(&sets)
        };
        // 257 states of 64 × 1024 values are 134.7 MB: two fit in 300 MiB, three do not.
        let limit = 300 << 20;
        check_network_within(
            &with("mgrit.keep_derivatives=false"),
            2,
            5,
            None,
            1024,
            1,
            limit,
        )
        .unwrap();
        let e = check_network_within(
            &with("mgrit.keep_derivatives=true"),
            2,
            5,
            None,
            1024,
            1,
            limit,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("the layer states of a rank"), "{e}");
    }

    #[test]
    fn the_defaults_fit_and_huge_sizes_are_refused_naming_the_key() {
        let c = config(&[]);
        check_data_within(&c, GIB).unwrap();
        check_network_within(&c, 2, 5, None, 5000, 1, GIB).unwrap();
        assert!(available_memory() > 0);
        let e = check_data_within(&config(&["data.val_size=1000000000000"]), 128 * GIB)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config key `data.val_size` = 1000000000000"),
            "{e}"
        );
        assert!(e.contains("need 21.8 TiB, more than the 128.0 GiB"), "{e}");
        let e = check_data_within(&config(&["data.train_size=1000000000000"]), 128 * GIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`data.train_size`"), "{e}");
        let big = config(&["network.layers=1000000000000"]);
        let e = check_network_within(&big, 2, 5, None, 5000, 4, 128 * GIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`network.layers` = 1000000000000"), "{e}");
        assert!(!e.contains('\n'));
        // Spline coefficients do not grow with N, the layer states do.
        let spline = config(&["controls.kind=spline", "network.layers=1000000000000"]);
        let e = check_network_within(&spline, 2, 5, None, 5000, 4, 128 * GIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the layer states of a rank"), "{e}");
        let e = check_network_within(
            &config(&["network.width=100000000"]),
            2,
            5,
            None,
            10,
            1,
            128 * GIB,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`network.width` = 100000000"), "{e}");
        // The largest sizes the configuration can hold do not overflow.
        let max = i64::MAX.to_string();
        let huge = config(&[
            &format!("network.layers={max}"),
            &format!("network.width={max}"),
            &format!("optimizer.lbfgs_memory={max}"),
        ]);
        assert!(check_network_within(
            &huge,
            usize::MAX,
            usize::MAX,
            None,
            usize::MAX,
            1,
            u128::MAX - 1
        )
        .is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * GIB / 2), "1.5 GiB");
    }
}
