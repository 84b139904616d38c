//! An optional TOML configuration file: `--config easel.toml` or
//! `EASEL_CONFIG=easel.toml`.
//!
//! Each key is a flag's name (`listen`, `data_dir`, `jpeg_quality`, ...), and
//! becomes that flag's `EASEL_*` variable unless the variable is already
//! set. So precedence is: flag, then environment, then file, then default.
//! Unknown keys are errors: a typo must not silently fall back to a default.

use std::collections::BTreeSet;
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
    known: &BTreeSet<String>,
    is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let var = format!("EASEL_{}", key.to_ascii_uppercase().replace('-', "_"));
        if !known.contains(&var) {
            bail!(
                "{}: unknown key {key:?}; known keys: {}",
                path.display(),
                known
                    .iter()
                    .map(|v| v.trim_start_matches("EASEL_").to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
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

/// Every `EASEL_*` variable any command reads, from the CLI definition.
pub fn known_variables(command: &clap::Command) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    let mut stack = vec![command];
    while let Some(cmd) = stack.pop() {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                known.insert(env.to_string_lossy().into_owned());
            }
        }
        stack.extend(cmd.get_subcommands());
    }
    known.remove("EASEL_CONFIG");
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["EASEL_LISTEN", "EASEL_JPEG_QUALITY", "EASEL_NO_CASCADE"]
            .into_iter()
            .map(String::from)
            .collect()
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
