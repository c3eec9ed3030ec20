//! The README's lab commands run as written: the block marked for this test is run line by
//! line, in order, against a lab set up as `cargo xtask run` sets it up (the namespace names
//! `synshield-lab-c` and `-s` are replaced by this lab's unique ones), and each line's output
//! is checked.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::process::Command;

use common::Synshield;
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF};

const README: &str = include_str!("../../README.md");
const MARK: &str = "<!-- Each line of this block is run by tcp-user/tests/lab_readme.rs. -->";

/// The commands of the marked block, without their trailing comments.
fn lab_commands() -> Vec<&'static str> {
    let after = &README[README.find(MARK).expect("the README marks its lab block") + MARK.len()..];
    let block = after.trim_start().strip_prefix("```sh\n").expect("a sh block follows the mark");
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|l| l.find(" # ").map_or(l, |at| &l[..at]).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_hping3_flood_in_the_readme_is_bounded_by_timeout() {
    let floods: Vec<&str> = README.lines().filter(|l| l.contains("hping3 -")).collect();
    assert!(!floods.is_empty());
    for line in floods {
        // hping3 ignores -c with --flood: only `timeout` ends it.
        assert!(line.contains("timeout "), "an unbounded flood in the README: {line}");
    }
}

#[test]
fn the_readmes_lab_commands_run_as_written() {
    let commands = lab_commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    // What `cargo xtask run` starts (xtask/src/run.rs).
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let _synshield = Synshield::start(
        &lab.shield,
        &[
            "serve",
            "--iface",
            SHIELD_IF,
            "--port",
            "7",
            "--app",
            "echo",
            "--metrics",
            "127.0.0.1:9100",
            "--quiet",
        ],
    );
    let mut outputs = Vec::new();
    for command in &commands {
        let line = command
            .replace("synshield-lab-c", lab.client.name())
            .replace("synshield-lab-s", lab.shield.name());
        // A bound for the test only, well above what each command takes.
        let out = Command::new("timeout").args(["60", "sh", "-c", &line]).output().unwrap();
        let code = out.status.code();
        // A command bounded by its own `timeout` ends with 124 when the time is up.
        let expected_end = code == Some(0) || (line.contains("timeout ") && code == Some(124));
        assert!(
            expected_end,
            "`{command}` ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((command, String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    for (command, stdout) in &outputs {
        if command.contains(" nc ") {
            assert_eq!(stdout, "hello\n", "`{command}`");
        }
    }
    // The last command reads the metrics, after the flood: the flood was answered.
    let (command, metrics) = outputs.last().unwrap();
    assert!(command.contains("curl"), "{command}");
    let synacks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("synshield_xdp_frames_total{verdict=\"tx_synack\"} "))
        .unwrap_or_else(|| panic!("no tx_synack in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(synacks > 10_000, "the 5-second flood was answered: {synacks} SYN-ACKs");
    let opened: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("synshield_connections_opened_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(opened, 2, "the two nc connections, and nothing from the flood");
}
