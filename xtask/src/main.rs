//! `cargo xtask`: setup, build, run, test and bench synshield.
//!
//! Every command that needs the toolchain or root first runs `setup`, which is idempotent and
//! takes a few seconds when everything is already there.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod build;
#[path = "../../tcp-user/src/impair.rs"]
mod impair;
#[path = "../../tcp-user/src/lab.rs"]
#[expect(dead_code, reason = "shared with tcp-user; xtask uses only part of it")]
mod lab;
mod run;
mod setup;
mod test;

#[derive(Parser)]
#[command(about = "synshield project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the build and the tests need (apt, crates.io), mount bpffs. Idempotent.
    Setup,
    /// Build the XDP object and the synshield binary (release).
    Build,
    /// With no ARGS: build, start a lab (client and shield namespaces), serve in it, show
    /// counters until Ctrl-C, tear down. With ARGS: run `synshield ARGS` on this host.
    Run {
        /// Arguments for synshield (e.g. `--iface eth0 --port 80`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build, lint, the pure tests, then the root tests in the lab. What CI runs.
    Test,
    /// Holds idle TCP connections for the memory benchmark (internal).
    #[command(hide = true)]
    Hold {
        /// `connect` or `serve`.
        mode: String,
        /// Address to connect to or listen at.
        addr: std::net::SocketAddr,
    },
    /// Setup, build, then the speed and memory benchmarks (engine, XDP per SYN, SYN flood in
    /// the lab, real clients in peace and under a hping3 flood); writes BENCHMARKS.md and
    /// benchmarks/*.svg. About five minutes.
    Bench {
        /// Shorter floods (3 s instead of 10 s), for development.
        #[arg(long)]
        quick: bool,
        /// Run only the section named WORD (engine, xdp, flood, datapath, load, loss), or else
        /// the sections whose title contains it; the report goes to target/bench-WORD.md and
        /// BENCHMARKS.md is left as it was. For development.
        #[arg(long, value_name = "WORD")]
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Build => setup::setup().and_then(|()| build::build()).map(drop),
        Cmd::Run { args } => run::run(&args),
        Cmd::Test => test::test(),
        Cmd::Hold { mode, addr } => bench::hold::hold(&mode, addr),
        Cmd::Bench { quick, only } => bench::bench(quick, only.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of xtask/).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command, failing with the command line if it fails.
fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Whether we run as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
