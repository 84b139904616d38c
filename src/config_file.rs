//! An optional TOML configuration file: `--config easel.toml` or
//! `EASEL_CONFIG=easel.toml`.
//!
//! Each key is a flag's long name with `_` for `-` (`listen`, `data_dir`,
//! `quality`, ...), and becomes that flag's `EASEL_*` variable unless the
//! variable is already set. So precedence is: flag, then environment, then
//! file, then default. The variable's own name works as a key too
//! (`jpeg_quality` for `EASEL_JPEG_QUALITY`), as files written for earlier
//! versions use it. Unknown keys are errors: a typo must not silently fall
//! back to a default.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Finds `--config PATH` (or `--config=PATH`) in the raw arguments, else
/// `EASEL_CONFIG`: the file must be read before clap sees the environment.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("EASEL_CONFIG").map(PathBuf::from)
}

/// The variables a file sets, as (name, value), minus those already set.
pub fn variables(
    path: &Path,
    known: &Keys,
    is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in table {
        let Some(var) = known.variable(&key) else {
            bail!(
                "{}: unknown key {key:?}; known keys: {}",
                path.display(),
                known.flag_keys().join(", ")
            );
        };
        if let Some((earlier, _)) = out.iter().find(|(v, _)| v == var) {
            bail!(
                "{}: {key:?} and another key both set {earlier}",
                path.display()
            );
        }
        let var = var.to_string();
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "{}: {key} must be a string, number or boolean, not {}",
                path.display(),
                other.type_str()
            ),
        };
        if !is_set(&var) {
            out.push((var, value));
        }
    }
    Ok(out)
}

/// The keys a file may set, each with the `EASEL_*` variable it stands for.
#[derive(Debug, Default)]
pub struct Keys {
    /// The flag's long name (`max_bytes`): what the README documents.
    by_flag: BTreeMap<String, String>,
    /// The variable's name without `EASEL_` (`jpeg_quality`).
    by_variable: BTreeMap<String, String>,
}

impl Keys {
    pub fn variable(&self, key: &str) -> Option<&str> {
        let key = key.replace('-', "_");
        self.by_flag
            .get(&key)
            .or_else(|| self.by_variable.get(&key))
            .map(String::as_str)
    }

    pub fn flag_keys(&self) -> Vec<&str> {
        self.by_flag.keys().map(String::as_str).collect()
    }
}

/// Every setting any command reads from an `EASEL_*` variable, from the
/// CLI definition. A flag name that two commands give to different
/// variables would make a key ambiguous: that is a bug in the CLI, and
/// `keys_are_unambiguous` in main.rs fails on it.
pub fn known_keys(command: &clap::Command) -> Result<Keys, String> {
    let mut keys = Keys::default();
    let mut stack = vec![command];
    let mut seen = BTreeSet::new();
    while let Some(cmd) = stack.pop() {
        for arg in cmd.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let var = env.to_string_lossy().into_owned();
            if var == "EASEL_CONFIG" || !seen.insert((long.to_string(), var.clone())) {
                continue;
            }
            let flag_key = long.replace('-', "_");
            if let Some(other) = keys.by_flag.insert(flag_key.clone(), var.clone()) {
                if other != var {
                    return Err(format!("--{long} reads both {other} and {var}"));
                }
            }
            let var_key = var.trim_start_matches("EASEL_").to_ascii_lowercase();
            keys.by_variable.insert(var_key, var);
        }
        stack.extend(cmd.get_subcommands());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Keys {
        let command = clap::Command::new("easel").subcommand(
            clap::Command::new("serve")
                .arg(clap::Arg::new("listen").long("listen").env("EASEL_LISTEN"))
                .arg(
                    clap::Arg::new("quality")
                        .long("quality")
                        .env("EASEL_JPEG_QUALITY"),
                )
                .arg(
                    clap::Arg::new("no_cascade")
                        .long("no-cascade")
                        .env("EASEL_NO_CASCADE"),
                ),
        );
        known_keys(&command).unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn keys_become_easel_variables_unless_the_environment_has_them() {
        let f = file("listen = \"0.0.0.0:9000\"\njpeg_quality = 90\nno_cascade = true\n");
        let vars = variables(f.path(), &known(), |v| v == "EASEL_JPEG_QUALITY").unwrap();
        assert_eq!(
            vars,
            vec![
                ("EASEL_LISTEN".to_string(), "0.0.0.0:9000".to_string()),
                ("EASEL_NO_CASCADE".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn a_key_is_the_flags_long_name_and_the_variables_name_still_works() {
        let f = file("quality = 80\n");
        let vars = variables(f.path(), &known(), |_| false).unwrap();
        assert_eq!(vars, vec![("EASEL_JPEG_QUALITY".into(), "80".into())]);
        let f = file("jpeg_quality = 80\n");
        let vars = variables(f.path(), &known(), |_| false).unwrap();
        assert_eq!(vars, vec![("EASEL_JPEG_QUALITY".into(), "80".into())]);
        let f = file("quality = 80\njpeg_quality = 90\n");
        let err = variables(f.path(), &known(), |_| false).unwrap_err();
        assert!(err.to_string().contains("EASEL_JPEG_QUALITY"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let f = file("jpeg_qualty = 90\n");
        let err = variables(f.path(), &known(), |_| false).unwrap_err();
        assert!(err.to_string().contains("\"jpeg_qualty\""), "{err}");
    }

    #[test]
    fn tables_and_bad_toml_are_refused() {
        let f = file("[listen]\nport = 1\n");
        assert!(variables(f.path(), &known(), |_| false).is_err());
        let f = file("listen = \n");
        assert!(variables(f.path(), &known(), |_| false).is_err());
    }

    #[test]
    fn the_config_flag_wins_over_the_variable() {
        let args: Vec<OsString> = ["easel", "serve", "--config=a.toml"]
            .map(OsString::from)
            .into();
        assert_eq!(path_from(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<OsString> = ["easel", "--config", "b.toml", "serve"]
            .map(OsString::from)
            .into();
        assert_eq!(path_from(&args), Some(PathBuf::from("b.toml")));
    }
}
