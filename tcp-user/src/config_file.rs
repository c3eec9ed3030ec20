//! `--config FILE`: options from a TOML file, overridden by the command line.
//!
//! The file's keys are the long option names of the subcommand (`iface`, `port`, `app`,
//! `metrics`, `xdp-mode`, ...), so everything `synshield serve --help` lists can go in it and
//! nothing else needs a second description:
//!
//! ```toml
//! iface = "eth0"
//! port = [80, 443]
//! app = "proxy"
//! upstream = "127.0.0.1:8080"
//! metrics = "127.0.0.1:9100"
//! rst-invalid-ack = true
//! ```
//!
//! The file is turned into command-line options, added in front of the user's, before clap
//! parses anything: clap checks and converts every value the same way from either source, and an
//! option added to `ServeArgs` works in the file at once. Precedence, from strongest: the command
//! line, the option's environment variable (`SYNSHIELD_IFACE`), the file, the default. A switch
//! (`quiet = true`) set in the file cannot be turned off from the command line.
//!
//! One file serves every subcommand: `synshield check --config F` and `synshield top --config F`
//! take from it the keys they know (`iface` and `port`, `metrics`) and skip those only `serve`
//! knows; a key that no subcommand knows is an error, so a typo does not pass silently.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Why the configuration file could not be used: each a sentence saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        message: String,
    },
    /// A key that no subcommand has as an option.
    #[error(
        "{path}: unknown key {key:?}; the keys are the long options of `synshield serve --help`: {known}"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Every key `serve` accepts.
        known: String,
    },
    /// A value of a type that no option takes.
    #[error("{path}: key {key:?} {problem}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `--config` without a file name.
    #[error("--config needs a file name: --config /etc/synshield/synshield.toml")]
    MissingPath,
}

/// The subcommand whose options define every key a configuration file may hold.
const FULL_SUBCOMMAND: &str = "serve";

/// Returns `args` (the whole command line, program name first) with the options from the
/// `--config` file of the subcommand inserted after the subcommand's name, except those the
/// command line or the environment already set. Without `--config`, returns `args` unchanged.
pub fn expand(args: Vec<OsString>, cli: &clap::Command) -> Result<Vec<OsString>, ConfigError> {
    let Some(sub_name) = args.get(1).and_then(|a| a.to_str()) else { return Ok(args) };
    let Some(sub) = cli.find_subcommand(sub_name) else { return Ok(args) };
    let user = &args[2..];
    let Some(path) = config_path(user)? else { return Ok(args) };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let full = cli.find_subcommand(FULL_SUBCOMMAND).unwrap_or(sub);
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let long = |c: &clap::Command| {
            c.get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
                .cloned()
        };
        let Some(arg) = long(sub) else {
            if long(full).is_some() {
                continue; // a `serve` option that this subcommand does not take
            }
            let known: Vec<&str> = full
                .get_arguments()
                .filter_map(clap::Arg::get_long)
                .filter(|l| *l != "config")
                .collect();
            return Err(ConfigError::UnknownKey {
                path,
                key: key.clone(),
                known: known.join(", "),
            });
        };
        if given_on_command_line(user, key)
            || arg.get_env().is_some_and(|v| std::env::var_os(v).is_some())
        {
            continue;
        }
        let bad = |problem| ConfigError::BadValue { path: path.clone(), key: key.clone(), problem };
        let takes_value = arg.get_action().takes_values();
        match (value, takes_value) {
            (toml::Value::Boolean(true), false) => from_file.push(format!("--{key}")),
            (toml::Value::Boolean(false), false) => {}
            (_, false) => return Err(bad("is a switch: write `true` or `false`")),
            (v, true) => from_file.push(format!(
                "--{key}={}",
                scalar_or_list(v).ok_or_else(|| bad(
                    "must be a string, a number, a boolean or a list of them"
                ))?
            )),
        }
    }
    let mut out = args[..2].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend_from_slice(user);
    Ok(out)
}

/// The `--config` value among the subcommand's arguments.
fn config_path(user: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    let mut it = user.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(|p| Some(PathBuf::from(p))).ok_or(ConfigError::MissingPath);
        }
        if let Some(p) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Ok(Some(Path::new(p).to_path_buf()));
        }
    }
    Ok(None)
}

/// Whether `--key` or `--key=...` is among the user's arguments.
fn given_on_command_line(user: &[OsString], key: &str) -> bool {
    let flag = format!("--{key}");
    let with_value = format!("--{key}=");
    user.iter()
        .take_while(|a| *a != OsStr::new("--"))
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&with_value))
}

/// A TOML value as clap would take it on the command line (lists comma separated).
fn scalar_or_list(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            items.iter().map(scalar_or_list).collect::<Option<Vec<_>>>().map(|v| v.join(","))
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}
