//! `synshield`: a SYN-flood shield. Answers SYNs with SYN cookies in XDP and serves the
//! validated connections from userspace. The work is in the library; this dispatches.

use std::io::Write as _;
use std::process::ExitCode;

use tcp_user::cli::{Cli, Command, ParseError};
use tcp_user::service::serve;

fn main() -> ExitCode {
    tcp_user::logging::init();
    let cli: Cli = match tcp_user::cli::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "synshield: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        // serve starts its own threads, after it has given up its privileges.
        Command::Serve(args) => serve(*args),
        Command::Check(args) => tcp_user::check::check(&args),
        Command::Top(args) => tcp_user::top::top(&args),
        Command::Keygen { path, force } => tcp_user::keyfile::generate(&path, force)
            .map(|()| {
                println!(
                    "synshield: wrote a new fleet secret to {}: copy it to every host (mode 0600) and give it with --key-file",
                    path.display()
                );
            })
            .map_err(anyhow::Error::from),
        Command::Completions { shell } => {
            tcp_user::cli::completions(shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { out_dir: None } => {
            tcp_user::cli::manpage(&mut std::io::stdout()).map_err(anyhow::Error::from)
        }
        Command::Manpage { out_dir: Some(dir) } => tcp_user::cli::manpages_into(&dir)
            .map(|files| {
                for f in files {
                    println!("{}", f.display());
                }
            })
            .map_err(|e| anyhow::anyhow!("writing man pages into {}: {e}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error while serving: the status line ends first, so the sentence has its own line.
            tcp_user::logging::end_status();
            // Not eprintln!, which panics if standard error is closed.
            let _ = writeln!(std::io::stderr(), "synshield: {e:#}");
            ExitCode::FAILURE
        }
    }
}
