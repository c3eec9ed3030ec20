//! `synshield`: a SYN-flood shield. Answers SYNs with SYN cookies in XDP and serves the
//! validated connections from userspace.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tcp_common::{Config, PortSet};
use tcp_user::loader::{Shield, XdpModeChoice};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser, Debug)]
#[command(
    name = "synshield",
    version,
    about = "A SYN-flood shield: SYN cookies at the NIC driver (XDP), connections served from userspace."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Protect ports on an interface until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Interface to attach to (e.g. eth0).
    #[arg(long, env = "SYNSHIELD_IFACE")]
    iface: String,
    /// Ports to protect, comma separated (at most 64).
    #[arg(long = "port", required = true, value_delimiter = ',', num_args = 1..)]
    ports: Vec<u16>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
    /// Do not print the status line every second.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synshield: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synshield: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn port_set(ports: &[u16]) -> anyhow::Result<PortSet> {
    let mut set = PortSet::EMPTY;
    for &p in ports {
        anyhow::ensure!(p != 0, "port 0 cannot be protected: give ports from 1 to 65535");
        set.insert(p);
    }
    anyhow::ensure!(
        set.len() <= PortSet::MAX_PORTS,
        "at most {} ports can be protected, {} were given",
        PortSet::MAX_PORTS,
        set.len()
    );
    Ok(set)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::EMPTY;
    config.ports = port_set(&args.ports)?;
    let shield = Shield::attach(&args.iface, args.xdp_mode, &config)?;
    // One line that scripts and tests wait for: the program is attached from here on.
    println!(
        "synshield: attached to {} ({} XDP), protecting ports {:?}",
        shield.iface(),
        shield.mode(),
        config.ports
    );
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let show = !args.quiet;
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = shield.counters()?;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                let now = shield.counters()?;
                if show {
                    let line = now.status_line(&last, last_at.elapsed().as_secs_f64());
                    if terminal {
                        // One line, rewritten in place: carriage return, clear line.
                        print!("\r\x1b[2K{line}");
                        let _ = std::io::stdout().flush();
                    } else {
                        println!("status: {line}");
                    }
                }
                last = now;
                last_at = Instant::now();
            }
        }
    }
    let iface = shield.iface().to_owned();
    drop(shield);
    if show && terminal {
        println!();
    }
    println!("synshield: detached from {iface}");
    Ok(())
}
