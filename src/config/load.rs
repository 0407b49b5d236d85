//! Loading: TOML text parsed, merged over the defaults key by key (each checked against the
//! default's type), the `--set` overrides applied on top, then checked and deserialized; and
//! the configuration's own round trips (TOML text, bincode bytes).

use super::check::check_choices;
use super::schema::{BlockConfig, Config};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

impl Config {
    /// The configuration as TOML text (every key, resolved values).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }

    /// The configuration as bincode bytes (standard configuration), to send to other ranks:
    /// [`Config::from_bytes`] gives back exactly this configuration.
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a Config always encodes")
    }

    /// The configuration that [`Config::to_bytes`] encoded (checked like a loaded one).
    pub fn from_bytes(bytes: &[u8]) -> Result<Config> {
        let (config, used): (Config, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| anyhow!("cannot decode the broadcast configuration: {e}"))?;
        if used != bytes.len() {
            bail!(
                "cannot decode the broadcast configuration: {} trailing bytes",
                bytes.len() - used
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a complete TOML text (such as one stored in a checkpoint).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        load_str(text, origin, &[])
    }
}

/// Parses TOML text, naming `origin` and the line of the first error.
pub(crate) fn parse_toml(text: &str, origin: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                anyhow!("{origin} is not valid TOML (line {line}): {msg}")
            }
            None => anyhow!("{origin} is not valid TOML: {msg}"),
        }
    })
}

/// The list keys whose items are numbers (f64); every other list holds integers ≥ 0. (The
/// defaults are empty lists, so the item type cannot be read off them.)
const NUMBER_LISTS: &[&str] = &["nested.target_acc"];

/// The list keys whose items are tables ([`BlockConfig`]).
const TABLE_LISTS: &[&str] = &["network.blocks"];

/// Checks `value` for key `key` against the default `reference`: same type (an integer is
/// accepted where a float is expected), no negative integers, tables recursively.
fn conform(
    key: &str,
    value: toml::Value,
    reference: &toml::Value,
    origin: &str,
) -> Result<toml::Value> {
    use toml::Value as V;
    match (reference, value) {
        (V::Table(rt), V::Table(t)) => {
            let mut out = rt.clone();
            for (k, v) in t {
                let full = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                let r = rt
                    .get(&k)
                    .ok_or_else(|| anyhow!("unknown config key `{full}` in {origin}"))?;
                out.insert(k, conform(&full, v, r, origin)?);
            }
            Ok(V::Table(out))
        }
        (V::Float(_), V::Integer(i)) => Ok(V::Float(i as f64)),
        (V::Array(_), V::Array(items)) if TABLE_LISTS.contains(&key) => {
            let item = toml::Value::try_from(BlockConfig::default()).expect("serializes");
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    V::Table(_) => conform(&format!("{key}[{}]", i + 1), v, &item, origin),
                    bad => bail!(
                        "config key `{key}` must be a list of tables ([[{key}]] sections), got {bad} (in {origin})"
                    ),
                })
                .collect::<Result<Vec<_>>>()
                .map(V::Array)
        }
        (V::Array(_), V::Array(items)) if NUMBER_LISTS.contains(&key) => items
            .into_iter()
            .map(|v| match v {
                V::Integer(i) => Ok(V::Float(i as f64)),
                V::Float(x) => Ok(V::Float(x)),
                bad => {
                    bail!("config key `{key}` must be a list of numbers, got {bad} (in {origin})")
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(V::Array),
        (V::Array(_), V::Array(items)) => {
            if let Some(bad) = items
                .iter()
                .find(|v| !matches!(v, V::Integer(i) if *i >= 0))
            {
                bail!("config key `{key}` must be a list of integers ≥ 0, got {bad} (in {origin})");
            }
            Ok(V::Array(items))
        }
        (V::Integer(_), V::Integer(i)) if i < 0 => {
            bail!("config key `{key}` must be ≥ 0, got {i} (in {origin})")
        }
        (r, v) if std::mem::discriminant(r) == std::mem::discriminant(&v) => Ok(v),
        (r, v) => {
            let what = if key.contains('.') || !matches!(r, V::Table(_)) {
                "config key"
            } else {
                "config section"
            };
            bail!(
                "{what} `{key}` must be {} {}, got {} {} (in {origin})",
                article(r.type_str()),
                r.type_str(),
                article(v.type_str()),
                v.type_str()
            )
        }
    }
}

fn article(t: &str) -> &'static str {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

pub(super) fn defaults_table() -> toml::Value {
    toml::Value::try_from(Config::default()).expect("the default config serializes")
}

/// Applies a file's table and the `--set` overrides on top of the defaults and validates.
pub(super) fn load_table(file: toml::Table, sets: &[String], origin: &str) -> Result<Config> {
    let defaults = defaults_table();
    let mut merged = conform("", toml::Value::Table(file), &defaults, origin)?;
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {set}: expected section.key=value"))?;
        let key = key.trim();
        let raw = raw.trim();
        let path: Vec<&str> = key.split('.').collect();
        // The value as TOML (numbers, booleans, quoted strings), else as a bare string.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut nested = value;
        for part in path.iter().rev() {
            let mut t = toml::Table::new();
            t.insert(part.to_string(), nested);
            nested = toml::Value::Table(t);
        }
        merged = conform("", nested, &merged, &format!("--set {set}"))?;
    }
    check_choices(&merged)?;
    let config: Config = merged.try_into().map_err(|e: toml::de::Error| {
        anyhow!(
            "invalid configuration ({origin}): {}",
            e.message().trim().replace('\n', " ")
        )
    })?;
    config.validate()?;
    Ok(config)
}

/// Loads a configuration from TOML text with `--set` overrides on top.
pub fn load_str(text: &str, origin: &str, sets: &[String]) -> Result<Config> {
    load_table(parse_toml(text, origin)?, sets, origin)
}

/// Loads the configuration: defaults, then the file (if any), then each `--set` override.
pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Config> {
    let (table, origin) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            let origin = p.display().to_string();
            (parse_toml(&text, &origin)?, origin)
        }
        None => (toml::Table::new(), "the defaults".to_string()),
    };
    load_table(table, sets, &origin)
}
