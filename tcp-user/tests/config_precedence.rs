//! The whole precedence chain of `--config`, through the binary: the command line wins over the
//! environment variable, which wins over the file, which wins over the default. `synshield
//! check` shows which interface it was given, and needs no privileges to say so.
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::process::Command;

fn check(config: &std::path::Path, env_iface: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synshield"));
    cmd.arg("check").arg("--config").arg(config).args(args).env_remove("SYNSHIELD_IFACE");
    if let Some(i) = env_iface {
        cmd.env("SYNSHIELD_IFACE", i);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface named on the `interface` line.
fn iface(report: &str) -> &str {
    let line =
        report.lines().find(|l| l.contains(" interface ")).unwrap_or_else(|| panic!("{report}"));
    if let Some(rest) = line.split("no network interface named \"").nth(1) {
        return rest.split('"').next().unwrap();
    }
    line.split_whitespace().nth(2).unwrap().trim_end_matches(':')
}

#[test]
fn command_line_beats_environment_beats_file() {
    let dir = std::env::temp_dir().join(format!("synshield-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("synshield.toml");
    std::fs::write(&config, "iface = \"fromfile0\"\nport = [7]\n").unwrap();

    let file_only = check(&config, None, &[]);
    let env_over_file = check(&config, Some("lo"), &[]);
    let flag_over_env = check(&config, Some("fromenv0"), &["--iface", "lo"]);
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(iface(&file_only), "fromfile0", "{file_only}");
    assert_eq!(iface(&env_over_file), "lo", "{env_over_file}");
    assert_eq!(iface(&flag_over_env), "lo", "{flag_over_env}");
    assert!(file_only.contains("port 7 "), "the file's ports are used: {file_only}");
}
