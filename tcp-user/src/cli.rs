//! The `synshield` command line: its subcommands, the `--config` file, shell completions and
//! man pages generated from it. `main.rs` only dispatches.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::check::CheckArgs;
use crate::config_file::{self, ConfigError};
use crate::service::ServeArgs;
use crate::top::TopArgs;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "synshield",
    version,
    about = "A SYN-flood shield: SYN cookies at the NIC driver (XDP), connections served from userspace.",
    long_about = "A SYN-flood shield: SYN cookies at the NIC driver (XDP), connections served from \
                  userspace.\n\nOptions of `serve` can also come from a TOML file (`--config FILE`, \
                  keys are the long option names); the command line wins over the file. Logs go to \
                  standard error with levels and key=value fields; RUST_LOG chooses the level."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Protect ports on an interface and serve an application on them, until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Check that synshield can run here: kernel features, capabilities, the interface's XDP
    /// modes and queues, the ports; one line of advice per finding. Changes nothing.
    Check(CheckArgs),
    /// A live view of a running synshield, read from its metrics endpoint: SYN/s, SYN-ACK/s,
    /// third ACKs, connections by state, bytes, retransmissions, the mode, the last minute.
    Top(TopArgs),
    /// Write a new 256-bit fleet secret for `serve --key-file` (mode 0600): copy the same file
    /// to every host behind the same service address, so any of them accepts a cookie another
    /// made.
    Keygen {
        /// The key file to write.
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Replace an existing file (hosts with the old secret then reject the cookies of hosts
        /// with the new one, until every host has the new file and got SIGHUP).
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page synshield(1) on standard output, or write one page per subcommand
    /// into a directory.
    Manpage {
        /// Write synshield.1, synshield-serve.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Parses a whole command line (program name first), with the `--config` file's options
/// merged in under the command line's.
pub fn parse(args: Vec<OsString>) -> Result<Cli, ParseError> {
    let args = config_file::expand(args, &Cli::command()).map_err(ParseError::Config)?;
    Cli::try_parse_from(args).map_err(ParseError::Clap)
}

/// Why the command line could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The configuration file.
    #[error(transparent)]
    Config(ConfigError),
    /// clap's own (usage, `--help`, `--version` included).
    #[error(transparent)]
    Clap(clap::Error),
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "synshield", out);
}

/// Writes synshield(1).
pub fn manpage(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Writes synshield.1 and one `synshield-SUB.1` per subcommand into `dir`; returns the files.
pub fn manpages_into(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut write = |name: String, cmd: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&path)?;
        clap_mangen::Man::new(cmd).title(name.to_uppercase()).render(&mut file)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands() {
        let name = format!("synshield-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name).version(env!("CARGO_PKG_VERSION")))?;
    }
    write("synshield".into(), cmd)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("synshield").chain(list.iter().copied()).map(OsString::from).collect()
    }

    fn serve(cli: Cli) -> ServeArgs {
        match cli.command {
            Command::Serve(a) => *a,
            other => panic!("not serve: {other:?}"),
        }
    }

    /// A configuration file in a fresh temporary directory, removed when dropped.
    struct ConfigFile(PathBuf);

    impl ConfigFile {
        fn new(text: &str) -> ConfigFile {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("synshield-cli-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("synshield.toml");
            std::fs::write(&path, text).unwrap();
            ConfigFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    const FILE: &str = r#"
iface = "eth7"
port = [80, 443]
app = "http"
metrics = "127.0.0.1:9100"
max-conns = 5000
rst-invalid-ack = true
"#;

    #[test]
    fn limits_and_timers_that_would_disable_the_service_are_refused_by_name() {
        // No connection at all, no TIME-WAIT (RFC 9293 asks for 2 MSL), a probe storm, a
        // reset at the first idle check, no half-open entry (stateful mode then drops every
        // SYN): each refused with clap's sentence naming the option, from either source.
        for (flag, value) in [
            ("--max-conns", "0"),
            ("--msl", "0"),
            ("--keepalive-interval", "0"),
            ("--keepalive-probes", "0"),
            ("--max-half-open", "0"),
        ] {
            let e = parse(args(&["serve", "--iface", "eth0", "--port", "80", flag, value]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(flag) && e.contains("is not in 1.."), "{flag}: {e}");
            let f = ConfigFile::new(&format!(
                "iface = \"eth0\"\nport = [80]\n{} = {value}\n",
                &flag[2..]
            ));
            let e = parse(args(&["serve", "--config", f.path()])).unwrap_err().to_string();
            assert!(e.contains("is not in 1.."), "{flag} in a file: {e}");
        }
        // 1 is taken.
        let ok = args(&["serve", "--iface", "eth0", "--port", "80", "--max-conns", "1"]);
        assert_eq!(serve(parse(ok).unwrap()).max_conns, 1);
    }

    #[test]
    fn config_file_gives_values_the_command_line_does_not() {
        let f = ConfigFile::new(FILE);
        let a = serve(parse(args(&["serve", "--config", f.path()])).unwrap());
        assert_eq!(a.iface, "eth7");
        assert_eq!(a.ports, [80, 443]);
        assert_eq!(a.app, crate::app::AppKind::Http);
        assert_eq!(a.metrics, Some("127.0.0.1:9100".parse::<SocketAddr>().unwrap()));
        assert_eq!(a.max_conns, 5000);
        assert!(a.rst_invalid_ack);
        // Untouched by the file: the default.
    }

    #[test]
    fn command_line_overrides_the_config_file() {
        let f = ConfigFile::new(FILE);
        let config = format!("--config={}", f.path());
        let a = serve(
            parse(args(&["serve", "--port", "8080", &config, "--max-conns=7", "--app", "echo"]))
                .unwrap(),
        );
        assert_eq!(a.ports, [8080], "a list from the command line replaces the file's");
        assert_eq!(a.max_conns, 7);
        assert_eq!(a.app, crate::app::AppKind::Echo);
        assert_eq!(
            a.iface, "eth7",
            "what the command line does not give still comes from the file"
        );
    }

    #[test]
    fn config_file_errors_name_the_file_and_the_key() {
        let f = ConfigFile::new("iface = \"eth0\"\nprot = [80]\n");
        let e =
            parse(args(&["serve", "--config", f.path(), "--port", "80"])).unwrap_err().to_string();
        assert!(
            e.contains("unknown key \"prot\"") && e.contains(f.path()) && e.contains("port"),
            "{e}"
        );

        let f = ConfigFile::new("iface = \"eth0\"\nport = [80]\nquiet = \"yes\"\n");
        let e = parse(args(&["serve", "--config", f.path()])).unwrap_err().to_string();
        assert!(e.contains("\"quiet\" is a switch"), "{e}");

        let f = ConfigFile::new("iface = \"eth0\"\nport = [80]\nmax-conns = \"many\"\n");
        let e = parse(args(&["serve", "--config", f.path()])).unwrap_err().to_string();
        assert!(e.contains("max-conns") && e.contains("many"), "clap's own check: {e}");

        let f = ConfigFile::new("iface = eth0\n");
        let e = parse(args(&["serve", "--config", f.path()])).unwrap_err().to_string();
        assert!(e.contains("is not valid TOML") && e.contains("line 1"), "{e}");

        let e = parse(args(&["serve", "--config", "/nonexistent/synshield.toml"])).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot read the configuration file /nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn check_takes_the_keys_it_knows_from_the_same_file() {
        let f = ConfigFile::new(FILE);
        let Command::Check(a) = parse(args(&["check", "--config", f.path()])).unwrap().command
        else {
            panic!("not check")
        };
        assert_eq!((a.iface.as_str(), a.ports.as_slice()), ("eth7", &[80, 443][..]));
    }

    #[test]
    fn top_reads_the_metrics_address_from_the_same_file() {
        let f = ConfigFile::new(FILE);
        let Command::Top(a) = parse(args(&["top", "--config", f.path()])).unwrap().command else {
            panic!("not top")
        };
        assert_eq!(a.metrics, "127.0.0.1:9100".parse::<SocketAddr>().unwrap());
        let Command::Top(a) =
            parse(args(&["top", "--config", f.path(), "--metrics", "[::1]:9200"])).unwrap().command
        else {
            panic!("not top")
        };
        assert_eq!(a.metrics, "[::1]:9200".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn the_packaged_example_configuration_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/synshield.toml");
        let a = serve(parse(args(&["serve", "--config", path])).unwrap());
        assert_eq!(a.iface, "eth0");
        assert!(a.metrics.is_some(), "the example serves metrics, for top and Prometheus");
    }

    #[test]
    fn keygen_and_the_fleet_options_parse() {
        let Command::Keygen { path, force } =
            parse(args(&["keygen", "/etc/synshield/fleet.key"])).unwrap().command
        else {
            panic!("not keygen")
        };
        assert_eq!((path.to_str(), force), (Some("/etc/synshield/fleet.key"), false));
        let Command::Keygen { force, .. } =
            parse(args(&["keygen", "--force", "k"])).unwrap().command
        else {
            panic!("not keygen")
        };
        assert!(force);

        let base = ["serve", "--iface", "eth0", "--port", "80"];
        let a = serve(parse(args(&base)).unwrap());
        assert_eq!((a.fleet.key_file, a.fleet.test_clock_offset), (None, None));
        let mut list = base.to_vec();
        list.extend(["--key-file", "/k", "--test-clock-offset", "-20"]);
        let a = serve(parse(args(&list)).unwrap());
        assert_eq!(a.fleet.key_file.as_deref(), Some(Path::new("/k")));
        assert_eq!(a.fleet.test_clock_offset, Some(-20));
        let mut list = base.to_vec();
        list.extend(["--test-clock-offset", "20"]);
        assert!(parse(args(&list)).is_err(), "the clock offset only goes with a key file");

        let f = ConfigFile::new("iface = \"eth0\"\nport = [80]\nkey-file = \"/etc/fleet.key\"\n");
        let a = serve(parse(args(&["serve", "--config", f.path()])).unwrap());
        assert_eq!(a.fleet.key_file.as_deref(), Some(Path::new("/etc/fleet.key")));

        let help =
            Cli::command().find_subcommand_mut("serve").unwrap().render_long_help().to_string();
        assert!(help.contains("--key-file"), "{help}");
        assert!(!help.contains("test-clock-offset"), "the test-only option is hidden: {help}");
    }

    #[test]
    fn completions_and_man_page_cover_every_subcommand_and_option() {
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        let mut man = Vec::new();
        manpage(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie") || man.contains(".TH synshield"), "{man}");
        for sub in Cli::command().get_subcommands() {
            assert!(bash.contains(sub.get_name()), "bash completion lacks {}", sub.get_name());
            assert!(man.contains(sub.get_name()), "man page lacks {}", sub.get_name());
        }
        for opt in ["--config", "--iface", "--xdp-mode", "--metrics"] {
            assert!(bash.contains(opt), "bash completion lacks {opt}");
        }
        let dir = std::env::temp_dir().join(format!("synshield-man-{}", std::process::id()));
        let pages = manpages_into(&dir).unwrap();
        let serve_page = std::fs::read_to_string(dir.join("synshield-serve.1")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(pages.len(), Cli::command().get_subcommands().count() + 1);
        assert!(serve_page.contains("rst\\-invalid\\-ack"), "{serve_page}");
    }
}
