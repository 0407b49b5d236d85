//! `layerpar study`: a designed set of training runs from one study file.
//!
//! A study file (TOML) names a base configuration, the keys that vary (a full grid or a
//! Latin hypercube over ranges and value sets, [`design`]), the seeds, and optionally groups
//! that each add their own settings (per-layer vs spline controls, nested vs plain). Every
//! run is base + group + design point + seed, applied as `--set` overrides through the usual
//! configuration loader, so every key and value is checked as `layerpar train` checks them.
//! [`runs`] executes the runs and records each finished one; [`summary`] makes the tables;
//! [`plots`] the box plots.

pub mod design;
pub mod plots;
pub mod runs;
pub mod summary;

use anyhow::{anyhow, bail, Context, Result};
use design::{Domain, Kind, Param};
use std::path::{Path, PathBuf};

/// Keys a study may not set: the study chooses them for each run.
const RESERVED: &[&str] = &["seed", "output.checkpoint_dir", "output.history"];

/// A group of runs: its name and the settings it adds to the base.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub set: Vec<(String, toml::Value)>,
}

/// A study file, parsed and checked.
#[derive(Clone, Debug)]
pub struct Study {
    pub name: String,
    /// The study file.
    pub file: PathBuf,
    /// The base configuration file (relative paths are taken from the study file's folder).
    pub config: Option<PathBuf>,
    /// The output folder.
    pub out: PathBuf,
    /// `[study.base]` settings, then the command line's `--set`.
    pub base: Vec<String>,
    pub seeds: Vec<u64>,
    pub kind: Kind,
    pub params: Vec<Param>,
    pub groups: Vec<Group>,
    /// The validation accuracy whose reach the summary counts.
    pub reach_acc: f64,
}

/// One run of the study.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// 0, 1, …: groups outermost, then design points, then seeds.
    pub id: usize,
    pub group: String,
    pub seed: u64,
    /// The design point's value of each parameter (in the order of [`Study::params`]).
    pub values: Vec<toml::Value>,
    /// The run's overrides, in the order applied: `output.progress = "none"`, base, group,
    /// design point, seed.
    pub sets: Vec<String>,
}

/// A value as `--set` takes it (TOML syntax: strings quoted, lists in brackets).
pub fn set_value(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(x) => {
            // A float keeps a decimal point or exponent so that it stays a float.
            format!("{x:?}")
        }
        other => other.to_string(),
    }
}

/// A value for a table cell: a string without its quotes, a number as written.
pub fn cell_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(x) => format!("{x:.6e}"),
        other => other.to_string().replace(',', ";"),
    }
}

/// The dotted keys and values of a table of settings: quoted dotted keys
/// (`"controls.kind" = "spline"`) and nested tables (`controls.kind = "spline"`, `[x.controls]`)
/// both give `controls.kind`.
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            v => out.push((key, v.clone())),
        }
    }
}

/// Reads a study file's keys with one-line errors naming the key.
struct Reader<'a> {
    origin: &'a str,
}

impl Reader<'_> {
    fn unknown(&self, t: &toml::Table, allowed: &[&str], at: &str) -> Result<()> {
        if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
            bail!(
                "{}: unknown key `{at}{k}` (known: {})",
                self.origin,
                allowed.join(", ")
            );
        }
        Ok(())
    }

    fn string(&self, t: &toml::Table, key: &str, at: &str) -> Result<Option<String>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => bail!(
                "{}: `{at}{key}` must be a string, got {}",
                self.origin,
                v.type_str()
            ),
        }
    }

    fn number(&self, t: &toml::Table, key: &str, at: &str) -> Result<Option<f64>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
            Some(v) => bail!(
                "{}: `{at}{key}` must be a finite number, got {v}",
                self.origin
            ),
        }
    }

    fn count(&self, t: &toml::Table, key: &str, at: &str, min: i64) -> Result<Option<usize>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= min => Ok(Some(*i as usize)),
            Some(v) => bail!(
                "{}: `{at}{key}` must be an integer ≥ {min}, got {v}",
                self.origin
            ),
        }
    }

    fn table<'t>(
        &self,
        t: &'t toml::Table,
        key: &str,
        at: &str,
    ) -> Result<Option<&'t toml::Table>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(x)) => Ok(Some(x)),
            Some(v) => bail!(
                "{}: `{at}{key}` must be a table, got {}",
                self.origin,
                v.type_str()
            ),
        }
    }

    fn tables<'t>(&self, t: &'t toml::Table, key: &str, at: &str) -> Result<Vec<&'t toml::Table>> {
        match t.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_table().ok_or_else(|| {
                        anyhow!(
                            "{}: `{at}{key}` must be a list of tables ([[{at}{key}]])",
                            self.origin
                        )
                    })
                })
                .collect(),
            Some(v) => bail!(
                "{}: `{at}{key}` must be a list of tables ([[{at}{key}]]), got {}",
                self.origin,
                v.type_str()
            ),
        }
    }

    fn param(&self, t: &toml::Table, i: usize) -> Result<Param> {
        let at = format!("study.param[{i}].");
        self.unknown(
            t,
            &["key", "range", "scale", "points", "integer", "values"],
            &at,
        )?;
        let key = self.string(t, "key", &at)?.ok_or_else(|| {
            anyhow!(
                "{}: `{at}key` is missing (the config key to vary)",
                self.origin
            )
        })?;
        let at = format!("study.param `{key}`: ");
        let domain = match (t.get("range"), t.get("values")) {
            (Some(_), Some(_)) => bail!("{}: {at}give `range` or `values`, not both", self.origin),
            (None, None) => bail!(
                "{}: {at}needs `range = [lo, hi]` or `values = [...]`",
                self.origin
            ),
            (None, Some(values)) => {
                if let Some(k) = ["scale", "points", "integer"]
                    .iter()
                    .find(|k| t.contains_key(**k))
                {
                    bail!(
                        "{}: {at}`{k}` applies to a range, not to `values`",
                        self.origin
                    );
                }
                let values = match values {
                    toml::Value::Array(v) if !v.is_empty() => v.clone(),
                    _ => bail!("{}: {at}`values` must be a non-empty list", self.origin),
                };
                if values.iter().any(|v| v.is_table() || v.is_array()) {
                    bail!(
                        "{}: {at}`values` must hold numbers, strings or booleans",
                        self.origin
                    );
                }
                Domain::Values(values)
            }
            (Some(range), None) => {
                let bounds: Option<Vec<f64>> = range.as_array().and_then(|a| {
                    a.iter()
                        .map(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
                        .collect()
                });
                let (lo, hi) = match bounds.as_deref() {
                    Some(&[lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
                    _ => bail!(
                        "{}: {at}`range` must be [lo, hi] with numbers lo < hi, got {range}",
                        self.origin
                    ),
                };
                let log = match self.string(t, "scale", "")?.as_deref() {
                    None | Some("linear") => false,
                    Some("log") => true,
                    Some(s) => bail!(
                        "{}: {at}`scale` must be \"linear\" or \"log\", got {s:?}",
                        self.origin
                    ),
                };
                if log && lo <= 0.0 {
                    bail!(
                        "{}: {at}a log range needs lo > 0, got [{lo}, {hi}]",
                        self.origin
                    );
                }
                let integer = match t.get("integer") {
                    None => false,
                    Some(toml::Value::Boolean(b)) => *b,
                    Some(v) => bail!(
                        "{}: {at}`integer` must be true or false, got {v}",
                        self.origin
                    ),
                };
                let points = self.count(t, "points", &at, 1)?;
                Domain::Range {
                    lo,
                    hi,
                    log,
                    integer,
                    points,
                }
            }
        };
        Ok(Param { key, domain })
    }
}

impl Study {
    /// Reads and checks a study file; `sets` are command-line overrides of the base, `out`
    /// replaces `study.out`.
    pub fn load(file: &Path, sets: &[String], out: Option<&Path>) -> Result<Study> {
        let origin = format!("study file {}", file.display());
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read study file {}", file.display()))?;
        Study::parse(&text, file, &origin, sets, out)
    }

    fn parse(
        text: &str,
        file: &Path,
        origin: &str,
        sets: &[String],
        out: Option<&Path>,
    ) -> Result<Study> {
        let top = crate::config::parse_toml(text, origin)?;
        let r = Reader { origin };
        r.unknown(&top, &["study"], "")?;
        let s = r
            .table(&top, "study", "")?
            .ok_or_else(|| anyhow!("{origin}: no [study] table"))?;
        r.unknown(
            s,
            &[
                "name",
                "config",
                "out",
                "seeds",
                "design",
                "samples",
                "lhs_seed",
                "reach_acc",
                "base",
                "param",
                "group",
            ],
            "study.",
        )?;
        let name = r
            .string(s, "name", "study.")?
            .ok_or_else(|| anyhow!("{origin}: `study.name` is missing"))?;
        check_name(&name).map_err(|e| anyhow!("{origin}: `study.name` {e}"))?;
        let dir = file.parent().unwrap_or(Path::new(""));
        let config = r.string(s, "config", "study.")?.map(|c| dir.join(c));
        let out = match out {
            Some(o) => o.to_path_buf(),
            None => PathBuf::from(
                r.string(s, "out", "study.")?
                    .unwrap_or_else(|| name.clone()),
            ),
        };
        let seeds = match s.get("seeds") {
            None => vec![1],
            Some(toml::Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| match v {
                    toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
                    _ => Err(anyhow!(
                        "{origin}: `study.seeds` must be a list of integers ≥ 0, got {v}"
                    )),
                })
                .collect::<Result<Vec<u64>>>()?,
            Some(v) => {
                bail!("{origin}: `study.seeds` must be a non-empty list of integers, got {v}")
            }
        };
        if let Some(d) = seeds
            .iter()
            .enumerate()
            .find_map(|(i, a)| seeds[..i].contains(a).then_some(a))
        {
            bail!("{origin}: `study.seeds` lists seed {d} twice");
        }
        let params = r
            .tables(s, "param", "study.")?
            .iter()
            .enumerate()
            .map(|(i, t)| r.param(t, i))
            .collect::<Result<Vec<_>>>()?;
        let kind = match r.string(s, "design", "study.")?.as_deref() {
            None | Some("grid") => {
                if s.contains_key("samples") || s.contains_key("lhs_seed") {
                    bail!(
                        "{origin}: `study.samples` and `study.lhs_seed` apply to design = \"lhs\""
                    );
                }
                Kind::Grid
            }
            Some("lhs") => Kind::Lhs {
                samples: r.count(s, "samples", "study.", 1)?.ok_or_else(|| {
                    anyhow!(
                        "{origin}: design = \"lhs\" needs `study.samples` (the number of points)"
                    )
                })?,
                seed: r.count(s, "lhs_seed", "study.", 0)?.unwrap_or(1) as u64,
            },
            Some(d) => bail!("{origin}: `study.design` must be \"grid\" or \"lhs\", got {d:?}"),
        };
        if kind == Kind::Grid {
            if let Some(p) = params
                .iter()
                .find(|p| matches!(p.domain, Domain::Range { points: None, .. }))
            {
                bail!(
                    "{origin}: study.param `{}`: a grid needs `points = k` for a range",
                    p.key
                );
            }
        }
        let reach_acc = r.number(s, "reach_acc", "study.")?.unwrap_or(0.9);
        if !(0.0..=1.0).contains(&reach_acc) {
            bail!("{origin}: `study.reach_acc` must be a fraction in [0, 1], got {reach_acc}");
        }
        let mut base_pairs = Vec::new();
        if let Some(b) = r.table(s, "base", "study.")? {
            flatten("", b, &mut base_pairs);
        }
        let mut base: Vec<String> = base_pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", set_value(v)))
            .collect();
        base.extend(sets.iter().cloned());
        let mut groups = Vec::new();
        for (i, g) in r.tables(s, "group", "study.")?.iter().enumerate() {
            let at = format!("study.group[{i}].");
            r.unknown(g, &["name", "set"], &at)?;
            let name = r
                .string(g, "name", &at)?
                .ok_or_else(|| anyhow!("{origin}: `{at}name` is missing"))?;
            check_name(&name).map_err(|e| anyhow!("{origin}: `{at}name` {e}"))?;
            if groups.iter().any(|x: &Group| x.name == name) {
                bail!("{origin}: two groups are named {name:?}");
            }
            let mut set = Vec::new();
            if let Some(t) = r.table(g, "set", &at)? {
                flatten("", t, &mut set);
            }
            groups.push(Group { name, set });
        }
        if groups.is_empty() {
            groups.push(Group {
                name: "all".into(),
                set: Vec::new(),
            });
        }
        // Keys the study sets for each run, and keys set twice for one run.
        let base_keys = base_pairs.iter().map(|(k, _)| k.as_str()).chain(
            sets.iter()
                .filter_map(|s| s.split_once('=').map(|(k, _)| k.trim())),
        );
        for k in base_keys
            .chain(params.iter().map(|p| p.key.as_str()))
            .chain(
                groups
                    .iter()
                    .flat_map(|g| g.set.iter().map(|(k, _)| k.as_str())),
            )
        {
            if RESERVED.contains(&k) {
                bail!(
                    "{origin}: the study sets `{k}` for each run ({}); remove it",
                    if k == "seed" {
                        "list the seeds in study.seeds"
                    } else {
                        "each run writes into its own folder under the output folder"
                    }
                );
            }
        }
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.key == p.key) {
                bail!("{origin}: study.param `{}` is listed twice", p.key);
            }
            if let Some(g) = groups
                .iter()
                .find(|g| g.set.iter().any(|(k, _)| *k == p.key))
            {
                bail!(
                    "{origin}: `{}` is both a study parameter and set by group {:?}",
                    p.key,
                    g.name
                );
            }
        }
        Ok(Study {
            name,
            file: file.to_path_buf(),
            config,
            out,
            base,
            seeds,
            kind,
            params,
            groups,
            reach_acc,
        })
    }

    /// Every run, in id order: groups outermost, then design points, then seeds.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let points = design::points(&self.params, self.kind)?;
        let mut runs = Vec::new();
        for g in &self.groups {
            for point in &points {
                for &seed in &self.seeds {
                    // Runs are quiet unless the study asks for their progress.
                    let mut sets = vec!["output.progress=\"none\"".to_string()];
                    sets.extend(self.base.iter().cloned());
                    sets.extend(g.set.iter().map(|(k, v)| format!("{k}={}", set_value(v))));
                    sets.extend(
                        self.params
                            .iter()
                            .zip(point)
                            .map(|(p, v)| format!("{}={}", p.key, set_value(v))),
                    );
                    sets.push(format!("seed={seed}"));
                    runs.push(Run {
                        id: runs.len(),
                        group: g.name.clone(),
                        seed,
                        values: point.clone(),
                        sets,
                    });
                }
            }
        }
        Ok(runs)
    }

    /// The folder of run `id` (its history, checkpoints and result row).
    pub fn run_dir(&self, id: usize) -> PathBuf {
        self.out.join("runs").join(format!("run-{id:04}"))
    }

    /// The overrides that place run `id`'s outputs in its folder.
    pub fn output_sets(&self, id: usize) -> Vec<String> {
        let dir = self.run_dir(id);
        vec![
            format!(
                "output.checkpoint_dir={}",
                toml_string(&dir.display().to_string())
            ),
            format!(
                "output.history={}",
                toml_string(&dir.join("history.csv").display().to_string())
            ),
        ]
    }

    /// Resolves every run's configuration (as `layerpar train` would, so that a bad key or
    /// value fails here, before any run starts) and returns the design's record: one line
    /// per run with a hash of its resolved configuration. Two studies with the same record
    /// run the same trainings.
    pub fn resolve(&self, runs: &[Run]) -> Result<String> {
        let mut record = format!("# layerpar study {:?}: {} runs\n", self.name, runs.len());
        for run in runs {
            let config =
                crate::config::load(self.config.as_deref(), &run.sets).with_context(|| {
                    format!(
                        "study file {}: run {} (group {:?}, seed {})",
                        self.file.display(),
                        run.id,
                        run.group,
                        run.seed
                    )
                })?;
            let hash = fnv1a(config.to_toml().as_bytes());
            record += &format!(
                "run {} group {} seed {} config {hash:016x} set {}\n",
                run.id,
                run.group,
                run.seed,
                run.sets.join(" ")
            );
        }
        Ok(record)
    }
}

/// A TOML string literal.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Group and study names become folder names and table cells.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "must be letters, digits, '-', '_' or '.', got {name:?}"
        ));
    }
    Ok(())
}

/// 64-bit FNV-1a: a fixed hash of the resolved design (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
