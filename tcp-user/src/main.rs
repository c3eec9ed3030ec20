//! `synshield`: a SYN-flood shield. Answers SYNs with SYN cookies in XDP and serves the
//! validated connections from userspace. The work is in the library; this is the CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tcp_user::service::{ServeArgs, serve};

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
    /// Protect ports on an interface and serve an application on them, until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
}

fn main() -> ExitCode {
    tcp_user::logging::init();
    let cli = Cli::parse();
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("synshield: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
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
