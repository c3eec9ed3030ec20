//! Logs: levels and `key=value` fields ([`tracing`]), written to standard error.
//!
//! One line per event: time, level, where it comes from, the message, then its fields, e.g.
//!
//! ```text
//! 2026-11-29T21:04:05.123456Z  INFO tcp_user::service: attached iface=eth0 xdp_mode=native ports=[80, 443]
//! ```
//!
//! `RUST_LOG` chooses what is shown: a level (`debug`), or targets with levels
//! (`warn,tcp_user=debug`); the default is `info`. Under systemd (`JOURNAL_STREAM` is set) the
//! time is left out, since the journal stamps every line itself. Libraries that log through
//! the `log` crate (aya, and modules not yet moved to `tracing`) come out the same way.
//!
//! On a terminal, `serve` keeps one status line at the bottom, rewritten in place
//! ([`show_status`]). A log line written after it would start in the middle of that line; so
//! when both go to the terminal, each log line first clears the status line, and the status
//! line is drawn again below it. `serve`'s own lines ([`say`]) do the same.
//!
//! Output nobody reads any more (a closed pipe) is dropped, never a panic: `println!` and
//! `eprintln!` would panic on EPIPE and take the shield down with them.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The filter from `RUST_LOG`, or `info` when it is unset or does not parse.
#[must_use]
pub fn filter_from(spec: Option<&str>) -> Targets {
    spec.and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Installs the subscriber for the process (and the `log` bridge). Call once, first thing.
pub fn init() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let ansi = std::io::stderr().is_terminal();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| LogWriter)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        registry.with(layer.without_time()).try_init()
    } else {
        registry.with(layer).try_init()
    };
}

/// The status line on the terminal now, if there is one. Held while a log line is written, so
/// that the two never interleave.
static STATUS: Mutex<Option<String>> = Mutex::new(None);

/// Clears the current terminal line and draws `line` there, without a newline, on standard
/// output; log lines keep it at the bottom from now on. `line` must fit the terminal's width.
pub fn show_status(line: &str) {
    let mut status = STATUS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r\x1b[2K{line}");
    let _ = out.flush();
    *status = Some(line.to_owned());
}

/// Writes `line` and a newline to standard output, above the status line if one is shown.
/// Output that nobody reads any more (a closed pipe, EPIPE) is not an error: the shield goes
/// on, where `println!` would panic.
pub fn say(line: &str) {
    let status = STATUS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = std::io::stdout().lock();
    match status.as_deref() {
        Some(shown) => {
            let _ = write!(out, "\r\x1b[2K{line}\n{shown}");
        }
        None => {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = out.flush();
}

/// Ends the status line with a newline; log lines are written plainly again.
pub fn end_status() {
    let mut status = STATUS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if status.take().is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

/// Standard error, written around the status line: the fmt layer hands it one whole event per
/// `write_all`.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let status = STATUS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let shared = status.is_some() && std::io::stderr().is_terminal();
        if shared {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
        // A write error is dropped here: tracing-subscriber would report it with
        // `eprintln!`, which panics when standard error is what failed.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(buf);
        let _ = err.flush();
        if let (true, Some(line)) = (shared, status.as_deref()) {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{line}");
            let _ = out.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_picks_levels_per_target_and_defaults_to_info() {
        let default = filter_from(None);
        assert!(default.would_enable("tcp_user::service", &Level::INFO));
        assert!(!default.would_enable("tcp_user::service", &Level::DEBUG));
        let custom = filter_from(Some("warn,tcp_user=debug"));
        assert!(custom.would_enable("tcp_user::loader", &Level::DEBUG));
        assert!(!custom.would_enable("aya::maps", &Level::INFO));
        assert!(custom.would_enable("aya::maps", &Level::WARN));
        // A typo does not silence the logs.
        assert!(filter_from(Some("=?")).would_enable("x", &Level::INFO));
    }
}
