//! The configuration: defaults, merging, every key's check and its one-line error.

/// Every example training run file loads (known keys, valid values); the block example has its
/// blocks, and its configuration survives the TOML round trip a checkpoint makes.
#[test]
fn the_example_run_files_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // (study-*.toml are `layerpar study` files, with their own [study] section.)
        if name.ends_with(".toml") && !name.starts_with("study") {
            let c = super::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{e:#}"));
            if path.ends_with("mnist-blocks.toml") {
                assert_eq!(c.network.blocks.len(), 2);
                assert_eq!(c.network.blocks[1].channels, 16);
                assert_eq!(c.network.blocks[0].pool, "max");
                let again = super::Config::from_toml(&c.to_toml(), "round trip").unwrap();
                assert_eq!(again, c);
            }
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} example files found in {}", dir.display());
}

use super::check::choice_keys;
use super::load::{defaults_table, load_table, parse_toml};
use super::*;
use bspline::KnotKind;
use odenet::{Activation, Closing, Loss, Opening};
use serde::{Deserialize, Serialize};

fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let full = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                keys(v, &full, out);
            } else {
                out.push(full);
            }
        }
    }
}

#[test]
fn the_commented_template_is_the_default_config() {
    let c = Config::from_toml(DEFAULT_TOML, "template").unwrap();
    assert_eq!(c, Config::default());
    let mut all = Vec::new();
    keys(&defaults_table(), "", &mut all);
    let template: toml::Table = DEFAULT_TOML.parse().unwrap();
    let mut mentioned = Vec::new();
    keys(&toml::Value::Table(template), "", &mut mentioned);
    all.sort();
    mentioned.sort();
    assert_eq!(all, mentioned, "the template must spell out every key");
    Config::default().validate().unwrap();
}

#[test]
fn design_contract_keys_exist() {
    let mut all = Vec::new();
    keys(&defaults_table(), "", &mut all);
    for k in [
        "data.kind",
        "network.width",
        "network.layers",
        "network.final_time",
        "network.activation",
        "controls.kind",
        "controls.degree",
        "controls.count",
        "mgrit.max_levels",
        "mgrit.cfactor",
        "mgrit.max_iter",
        "mgrit.tol",
        "mgrit.adjoint_max_iter",
        "mgrit.adjoint_tol",
        "optimizer.kind",
        "optimizer.max_iter",
        "optimizer.learning_rate",
        "optimizer.batch_size",
        "seed",
        "output.checkpoint_every",
        "output.checkpoint_dir",
    ] {
        assert!(all.iter().any(|a| a == k), "missing {k}");
    }
}

fn err(text: &str, sets: &[&str]) -> String {
    let table = parse_toml(text, "run.toml").map_err(|e| e.to_string());
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match table {
        Err(e) => e,
        Ok(t) => load_table(t, &sets, "run.toml").unwrap_err().to_string(),
    }
}

#[test]
fn errors_name_the_key_on_one_line() {
    let cases: &[(&str, &[&str], &str)] = &[
            (
                "[network]\nwidht = 3\n",
                &[],
                "unknown config key `network.widht` in run.toml",
            ),
            ("[netwrk]\nwidth = 3\n", &[], "unknown config key `netwrk`"),
            (
                "[network]\nwidth = \"x\"\n",
                &[],
                "config key `network.width` must be an integer, got a string",
            ),
            (
                "[network]\nwidth = 0\n",
                &[],
                "config key `network.width` must be ≥ 1, got 0",
            ),
            (
                "[network]\nwidth = -3\n",
                &[],
                "config key `network.width` must be ≥ 0, got -3",
            ),
            (
                "[network]\nactivation = \"sigmoid\"\n",
                &[],
                "config key `network.activation` must be one of",
            ),
            (
                "[network]\nfinal_time = -1.0\n",
                &[],
                "`network.final_time` must be a positive number",
            ),
            (
                "network = 3\n",
                &[],
                "config section `network` must be a table, got an integer",
            ),
            ("[network\n", &[], "run.toml is not valid TOML (line 1)"),
            (
                "",
                &["network.depth=3"],
                "unknown config key `network.depth` in --set network.depth=3",
            ),
            (
                "",
                &["optimizer.kind=newton"],
                "config key `optimizer.kind` must be one of",
            ),
            ("", &["network.layers"], "expected section.key=value"),
            (
                "",
                &["mgrit.cfactor=1"],
                "`mgrit.cfactor` must be ≥ 2, got 1",
            ),
            (
                "",
                &["mgrit.cfactor_levels=[4, 1]"],
                "`mgrit.cfactor_levels` must hold factors ≥ 2, got 1",
            ),
            (
                "",
                &["mgrit.fmg=yes"],
                "`mgrit.fmg` must be a boolean, got a string",
            ),
            (
                "",
                &["optimizer.ls_factor=1.5"],
                "`optimizer.ls_factor` must lie in (0, 1)",
            ),
            (
                "[data]\nkind = \"csv\"\n",
                &[],
                "`data.path` must name the data file",
            ),
            (
                "[data]\nkind = \"idx\"\ntrain_images = \"a\"\n",
                &[],
                "config key `data.train_labels` must name the IDX file when data.kind = \"idx\"",
            ),
            (
                "[data]\nkind = \"idx\"\ntrain_images = \"a\"\ntrain_labels = \"b\"\n",
                &["data.test_labels=c"],
                "`data.test_images` and `data.test_labels` name the IDX validation files: give both or neither",
            ),
            (
                "[data]\nkind = \"cifar10\"\n",
                &[],
                "`data.path` must name the directory of the CIFAR-10 binary batches",
            ),
            (
                "",
                &["data.image_shape=[1, 28]"],
                "`data.image_shape` must be [channels, height, width] (3 integers ≥ 1) or [] (none), got [1, 28]",
            ),
            (
                "",
                &["data.image_shape=[1, 0, 2]"],
                "`data.image_shape` must be [channels, height, width]",
            ),
        ];
    for (text, sets, expect) in cases {
        let e = err(text, sets);
        assert!(
            e.contains(expect),
            "for {text:?} {sets:?}: got `{e}`, want `{expect}`"
        );
        assert!(!e.contains('\n'), "multi-line error: {e}");
    }
}

#[test]
fn overrides_apply_in_order_and_floats_take_integers() {
    let t = parse_toml("[network]\nwidth = 4\nfinal_time = 2\n", "f").unwrap();
    let sets = vec![
        "network.width=6".to_string(),
        "network.activation=tanh".to_string(),
        "seed=9".into(),
    ];
    let c = load_table(t, &sets, "f").unwrap();
    assert_eq!(c.network.width, 6);
    assert_eq!(c.network.final_time, 2.0);
    assert_eq!(c.network.activation, Activation::Tanh);
    assert_eq!(c.seed, 9);
    assert_eq!(c.network.layers, Config::default().network.layers);
}

/// The names a choice lists are the names serde reads and writes, for every value.
fn names_match_serde<T: Choice + Serialize + serde::de::DeserializeOwned + std::fmt::Debug>() {
    #[derive(Serialize, Deserialize)]
    struct W<T> {
        v: T,
    }
    for &(name, value) in T::CHOICES {
        let text = toml::to_string(&W { v: value }).unwrap();
        assert_eq!(text.trim(), format!("v = \"{name}\""));
        let back: W<T> = toml::from_str(&text).unwrap();
        assert_eq!(back.v, value);
        assert_eq!(value.name(), name);
    }
}

#[test]
fn every_choice_is_named_as_serde_names_it() {
    names_match_serde::<Activation>();
    names_match_serde::<Opening>();
    names_match_serde::<Closing>();
    names_match_serde::<Loss>();
    names_match_serde::<KnotKind>();
    names_match_serde::<ControlsKind>();
    names_match_serde::<OptimizerKind>();
    names_match_serde::<ScheduleKind>();
    names_match_serde::<Progress>();
    names_match_serde::<DataKind>();
    names_match_serde::<Normalize>();
    names_match_serde::<Interp>();
    names_match_serde::<TargetMeasure>();
    names_match_serde::<BatchStart>();
    // Every choice key exists, and every bad value names the key and every choice.
    for (key, names) in choice_keys() {
        let e = err("", &[&format!("{key}=nope")]);
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        assert_eq!(
            e,
            format!(
                "config key `{key}` must be one of {}, got \"nope\"",
                quoted.join(", ")
            )
        );
    }
}

#[test]
fn number_lists_take_fractions_and_integers() {
    let sets = [
        "nested.levels=2".to_string(),
        "nested.target_acc=[0.5, 1]".into(),
    ];
    let c = load_str("", "x", &sets).unwrap();
    assert_eq!(c.nested.target_acc, vec![0.5, 1.0]);
    let e = err("", &["nested.levels=2", "nested.target_acc=[0.5, \"x\"]"]);
    assert!(
        e.contains("`nested.target_acc` must be a list of numbers"),
        "{e}"
    );
    let e = err("", &["nested.levels=2", "nested.target_acc=[0.5, 2]"]);
    assert!(e.contains("must hold fractions in [0, 1], got 2"), "{e}");
    let e = err("", &["nested.max_iter=[0.5]"]);
    assert!(
        e.contains("`nested.max_iter` must be a list of integers ≥ 0"),
        "{e}"
    );
}

#[test]
fn a_bad_choice_in_the_file_can_be_overridden() {
    let t = parse_toml("[network]\nactivation = \"foo\"\n", "f").unwrap();
    let c = load_table(t, &["network.activation=relu".to_string()], "f").unwrap();
    assert_eq!(c.network.activation, Activation::Relu);
}

#[test]
fn spline_interp_defaults_mean_keep() {
    let c = load_str("", "x", &["controls.kind=spline".into()]).unwrap();
    assert_eq!(c.interp(), Interp::Keep);
    assert_eq!(Config::default().interp(), Interp::Constant);
    let e = err("", &["nested.interp=keep"]);
    assert!(e.contains("applies to spline controls"), "{e}");
    let e = err(
        "",
        &[
            "controls.kind=spline",
            "controls.knots=uniform",
            "nested.interp=knots",
        ],
    );
    assert!(e.contains("needs controls.knots = \"clamped\""), "{e}");
}

#[test]
fn round_trips_through_bincode() {
    let mut c = load_str(
        "",
        "x",
        &[
            "controls.kind=spline".into(),
            "nested.levels=2".into(),
            "nested.interp=knots".into(),
            "nested.target_acc=[0.5, 0.75]".into(),
            "optimizer.schedule=cosine".into(),
            "mgrit.cfactor_levels=[4, 2]".into(),
            "data.path=some/file.h5".into(),
        ],
    )
    .unwrap();
    c.optimizer.gtol = 1.0 / 3.0;
    let bytes = c.to_bytes();
    let back = Config::from_bytes(&bytes).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.optimizer.gtol.to_bits(), c.optimizer.gtol.to_bits());
    assert!(Config::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Config::from_bytes(&longer).is_err());
}

/// A small deterministic generator for the fuzz test (xorshift64*).
struct Fuzz(u64);

impl Fuzz {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Values a key may be given: of every TOML type, at and beyond every range.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "1000000000000",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "0.0",
    "-0.0",
    "0.5",
    "1.5",
    "1e308",
    "1e-308",
    "-1e3",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"\"",
    "\"x\"",
    "\"layer\"",
    "\"spline\"",
    "\"adam\"",
    "\"peaks\"",
    "\"csv\"",
    "\"knots\"",
    "\"uniform\"",
    "[]",
    "[1, 2]",
    "[0.5, 2]",
    "[-1]",
    "[\"a\"]",
    "[[1]]",
    "{}",
    "{a = 1}",
    "1979-05-27T07:32:00Z",
    "0x10",
    "1_000",
    "'lit'",
    "\"\\u00e9\"",
    "\"a\\nb\"",
];

/// Mutates a TOML text: deletes, inserts, duplicates or rewrites a part of it.
fn mutate(text: &str, g: &mut Fuzz) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..1 + g.below(4) {
        let i = g.below(lines.len());
        match g.below(6) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(g.below(lines.len()), l);
            }
            2 => {
                // A key's value replaced.
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {}", g.pick(VALUES));
                }
            }
            3 => {
                // Random characters inserted at a character boundary.
                let chars: Vec<char> = lines[i].chars().collect();
                let at = g.below(chars.len() + 1);
                let noise: String = (0..1 + g.below(3))
                    .map(|_| {
                        let pool = "[]{}=\"'.,#\\ \t0123456789-+eE_xé\u{0}\u{7f}";
                        let pool: Vec<char> = pool.chars().collect();
                        pool[g.below(pool.len())]
                    })
                    .collect();
                let mut out: String = chars[..at].iter().collect();
                out.push_str(&noise);
                out.extend(&chars[at..]);
                lines[i] = out;
            }
            4 => {
                // A line truncated.
                let chars: Vec<char> = lines[i].chars().collect();
                lines[i] = chars[..g.below(chars.len() + 1)].iter().collect();
            }
            _ => {
                let j = g.below(lines.len());
                lines.swap(i, j);
            }
        }
        if lines.is_empty() {
            break;
        }
    }
    lines.join("\n")
}

/// Checks one input: no panic; a refusal is one non-empty line; an accepted configuration
/// round-trips (TOML, bincode) and its sizes can be checked without overflow.
fn check_input(text: &str, sets: &[String]) -> bool {
    let r = std::panic::catch_unwind(|| load_str(text, "fuzz.toml", sets));
    let r = r.unwrap_or_else(|_| panic!("panicked on {text:?} with {sets:?}"));
    match r {
        Err(e) => {
            let e = format!("{e:#}");
            assert!(!e.is_empty() && !e.contains('\n'), "{e:?} for {sets:?}");
            false
        }
        Ok(c) => {
            assert_eq!(Config::from_toml(&c.to_toml(), "again").unwrap(), c);
            assert_eq!(Config::from_bytes(&c.to_bytes()).unwrap(), c);
            let _ = crate::limits::check_data_within(&c, 1 << 30);
            let _ = crate::limits::check_network_within(&c, 2, 5, None, 5000, 3, 1 << 30);
            true
        }
    }
}

/// Fuzzing the configuration reader (issue 11): mutated TOML texts (the commented
/// template and a resolved configuration) and generated `--set` overrides, for about
/// two seconds. Prints how many inputs ran and how many were accepted.
#[test]
fn the_config_reader_survives_mutated_texts_and_overrides() {
    let mut all = Vec::new();
    keys(&defaults_table(), "", &mut all);
    let resolved = Config::default().to_toml();
    let start = std::time::Instant::now();
    let mut g = Fuzz(0x6c61_7965_7270_6172);
    let (mut inputs, mut accepted) = (0usize, 0usize);
    while start.elapsed() < std::time::Duration::from_secs(2) && inputs < 200_000 {
        let base = if g.below(2) == 0 {
            DEFAULT_TOML
        } else {
            resolved.as_str()
        };
        let text = match g.below(3) {
            0 => String::new(),
            _ => mutate(base, &mut g),
        };
        let sets: Vec<String> = (0..g.below(4))
            .map(|_| {
                let key = match g.below(10) {
                    0 => format!("{}x", all[g.below(all.len())]),
                    1 => g
                        .pick(&["", "network", "network.", ".width", "a.b.c", "seed.x"])
                        .to_string(),
                    _ => all[g.below(all.len())].clone(),
                };
                match g.below(12) {
                    0 => key,
                    1 => format!("{key}=="),
                    _ => format!("{key}={}", g.pick(VALUES)),
                }
            })
            .collect();
        accepted += usize::from(check_input(&text, &sets));
        inputs += 1;
    }
    println!(
        "config fuzz: {inputs} inputs, {accepted} accepted, every other one refused with one line"
    );
    assert!(inputs >= 1000, "only {inputs} inputs in the time");
    assert!(accepted > 0 && accepted < inputs);
}

#[test]
fn round_trips_through_toml() {
    let mut c = Config::default();
    c.network.width = 17;
    assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
}

#[test]
fn nested_iteration_needs_every_block_depth_divisible() {
    let text = "[network]\nkind = \"conv\"\nlayers = 8\n\
                    [[network.blocks]]\nlayers = 4\n[[network.blocks]]\nlayers = 6\n";
    let sets = vec!["nested.levels=2".to_string()];
    assert!(load_str(text, "run.toml", &sets).is_ok());
    let e = err(text, &["nested.levels=3"]);
    assert_eq!(
            e,
            "config key `network.blocks[2].layers` = 6 must be divisible by nested.refine^(nested.levels − 1) = 4"
        );
}
