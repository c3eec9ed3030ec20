//! `synshield top`: a live view of a running synshield, read from its metrics endpoint once a
//! second: SYNs and SYN-ACKs per second, valid and invalid third ACKs, connections by state,
//! bytes in and out, retransmissions, the mode, with a sparkline of the last minute per row.
//!
//! It reads the same `/metrics` page Prometheus does, so it needs no privileges and works
//! against any instance it can reach (`--metrics ADDR:PORT`, or `metrics` in `--config`).

mod model;
mod view;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

pub use model::{History, Scrape};

/// Options of `synshield top`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopArgs {
    /// The metrics endpoint of the synshield to watch (its `serve --metrics`).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub metrics: SocketAddr,
    /// A line to show under the figures (`cargo xtask run` shows how to reach the lab).
    #[arg(long, hide = true)]
    pub note: Vec<String>,
    /// Read `metrics` from this TOML file (the one `serve --config` reads).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// How often the page is read.
const INTERVAL: Duration = Duration::from_secs(1);

/// Fetches and parses `http://ADDR/metrics`.
pub fn scrape(addr: SocketAddr) -> std::io::Result<Scrape> {
    let mut s = TcpStream::connect_timeout(&addr, INTERVAL)?;
    s.set_read_timeout(Some(INTERVAL))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: synshield\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(head.lines().next().unwrap_or("").to_owned()));
    }
    Ok(Scrape::parse(body))
}

/// Restores the terminal when dropped, also on error and panic.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the live view until `q`, Esc or Ctrl-C.
pub fn top(args: &TopArgs) -> Result<()> {
    let mut terminal =
        ratatui::try_init().context("top needs a terminal (it draws a live screen)")?;
    let _guard = TerminalGuard;
    let mut history = History::default();
    let mut status = view::Status {
        source: format!("http://{}/metrics", args.metrics),
        ..view::Status::default()
    };
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next {
            match scrape(args.metrics) {
                Ok(s) => {
                    let started = s.get("synshield_start_time_seconds");
                    status.uptime = unix_now().and_then(|n| {
                        #[expect(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            reason = "whole seconds"
                        )]
                        let started = started as u64;
                        (started > 0).then(|| n.saturating_sub(started))
                    });
                    status.error = None;
                    history.push(now, s);
                }
                Err(e) => status.error = Some(e.to_string()),
            }
            terminal.draw(|f| view::draw(f, &history, &status)).context("drawing")?;
            next = now + INTERVAL;
        }
        // A key wakes us before the next scrape (a resize within a tenth of a second); the
        // scrape itself is on a clock.
        let wait = next.saturating_duration_since(Instant::now()).min(RESIZE_LATENCY);
        if terminal_input(wait) == Input::HungUp {
            // The terminal is gone (closed window, dropped SSH session): nobody to show
            // anything to. crossterm would read its end of file forever.
            return Ok(());
        }
        while event::poll(Duration::ZERO).context("reading keys")? {
            match event::read().context("reading keys")? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                Event::Resize(..) => {
                    terminal.draw(|f| view::draw(f, &history, &status)).context("drawing")?;
                }
                _ => {}
            }
        }
    }
}

/// The longest a resize waits to be drawn: crossterm learns of it from SIGWINCH, which does
/// not wake the wait on the terminal.
const RESIZE_LATENCY: Duration = Duration::from_millis(100);

/// What the terminal has after [`terminal_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Something to read, or the time is up.
    Ready,
    /// The terminal hung up. Only the session leader gets SIGHUP for it: top under
    /// `cargo xtask run`, or behind a shell that ignores it, learns it here.
    HungUp,
}

/// Waits up to `timeout` for input on standard input when it is the terminal.
fn terminal_input(timeout: Duration) -> Input {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        // crossterm reads /dev/tty then: its own wait (the events are drained after it).
        let _ = event::poll(timeout);
        return Input::Ready;
    }
    let mut pfd = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if n == 1 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::HungUp
    } else {
        Input::Ready
    }
}

fn unix_now() -> Option<u64> {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}
