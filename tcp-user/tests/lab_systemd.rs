//! packaging/systemd/synshield.service: systemd-analyze accepts it without a warning and rates
//! its exposure OK; its capability set is exactly what `synshield serve` needs (serve attaches
//! and serves in the lab with those capabilities only, fails without any one of them, and
//! `synshield check` names the missing one); and its system-call filter and address families
//! allow every call and family serve makes (strace of a serve that attaches, echoes, serves
//! metrics and stops). No systemd runs here, so the unit itself is not started.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::process::{Command, Stdio};

use common::{lines, wait_for_line};
use tcp_user::check::CAPABILITIES;
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF};

const UNIT: &str = include_str!("../../packaging/systemd/synshield.service");
const INSTALLED_BINARY: &str = "/usr/local/bin/synshield";

/// The unit's values of `key` (every `key=` line, in order).
fn unit_values(key: &str) -> Vec<&'static str> {
    UNIT.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

/// The unit's capabilities as setpriv names them (`bpf`, `net_admin`, ...).
fn unit_capabilities() -> Vec<String> {
    let sets = unit_values("CapabilityBoundingSet");
    assert_eq!(sets.len(), 1, "one CapabilityBoundingSet line");
    sets[0].split_whitespace().map(|c| c.strip_prefix("CAP_").unwrap().to_lowercase()).collect()
}

/// A copy of the unit whose binary is the one under test (verify checks that it exists), in a
/// temporary directory removed on drop.
struct UnitCopy(std::path::PathBuf);

impl UnitCopy {
    fn new() -> UnitCopy {
        let dir = std::env::temp_dir().join(format!("synshield-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("synshield.service");
        std::fs::write(&path, UNIT.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_synshield")))
            .unwrap();
        UnitCopy(path)
    }
}

impl Drop for UnitCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning_and_rates_it_ok() {
    assert!(unit_values("ExecStart").iter().all(|e| e.starts_with(INSTALLED_BINARY)));
    for key in [
        "ProtectSystem",
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateDevices",
        "RestrictAddressFamilies",
    ] {
        assert!(!unit_values(key).is_empty(), "the unit sets {key}");
    }
    let copy = UnitCopy::new();
    // --man=no: the man page is installed by hand (synshield manpage --out-dir), not here.
    let out =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy.0).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze verify warned: {stderr}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for synshield.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    // systemd calls up to 3.9 "OK"; root with five capabilities and a network is not 0.
    assert!(exposure <= 3.0, "exposure {exposure}:\n{text}");

    // A typo is caught: the same check on a broken copy fails or warns.
    std::fs::write(
        &copy.0,
        UNIT.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe")
            .replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_synshield")),
    )
    .unwrap();
    let out =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy.0).output().unwrap();
    assert!(!out.stderr.is_empty(), "a bad value must be reported");
}

#[test]
fn check_lists_the_units_capabilities() {
    let mut ours: Vec<String> = CAPABILITIES
        .iter()
        .map(|(_, n, _)| n.strip_prefix("CAP_").unwrap().to_lowercase())
        .collect();
    let mut unit = unit_capabilities();
    ours.sort();
    unit.sort();
    assert_eq!(ours, unit, "synshield check and the unit must agree on the capabilities");
}

/// Runs `synshield ARGS` in the shield namespace with only `caps` (root's uid, bounding set
/// reduced, as systemd does with CapabilityBoundingSet=).
fn with_caps(lab: &Lab, caps: &[String], args: &[&str]) -> Command {
    let bounding = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = lab.shield.command("setpriv");
    cmd.arg(format!("--bounding-set={bounding}"))
        .arg("--inh-caps=-all")
        .arg(env!("CARGO_BIN_EXE_synshield"))
        .args(args)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn serve_runs_with_the_units_capabilities_and_fails_without_any_one() {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let caps = unit_capabilities();
    let serve = ["serve", "--iface", SHIELD_IF, "--port", "7", "--quiet", "--xdp-mode", "native"];

    let mut child = with_caps(&lab, &caps, &serve)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = common::Synshield {
        stdout: lines(child.stdout.take().unwrap()),
        stderr: lines(child.stderr.take().unwrap()),
        child,
    };
    if let Err(seen) = wait_for_line(&guard.stdout, |l| l.starts_with("synshield: attached")) {
        panic!(
            "serve did not attach with {caps:?}: {seen:?} {:?}",
            guard.stderr.try_iter().collect::<Vec<_>>()
        );
    }
    // It serves: a client gets its line echoed back.
    let echoed = lab
        .client
        .enter(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect((tcp_user::lab::SHIELD_V4, 7)).unwrap();
            s.write_all(b"ping\n").unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            buf
        })
        .unwrap();
    assert_eq!(&echoed, b"ping\n");
    // Its logs carry levels and key=value fields.
    let log =
        wait_for_line(&guard.stderr, |l| l.contains(" INFO ") && l.contains("attached")).unwrap();
    assert!(
        log.contains(&format!("iface=\"{SHIELD_IF}\"")) && log.contains("xdp_mode=native"),
        "{log}"
    );
    guard.terminate();
    let mut guard = guard;
    assert!(guard.child.wait().unwrap().success());

    let check = with_caps(&lab, &caps, &["check", "--iface", SHIELD_IF]).output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.lines().any(|l| l.starts_with("ok    capabilities")), "{text}");

    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let out = with_caps(&lab, &fewer, &serve).output().unwrap();
        assert!(!out.status.success(), "serve ran without {missing}: the unit grants one too many");
        let link = lab.shield.run("ip", &["-d", "link", "show", "dev", SHIELD_IF]).unwrap();
        assert!(!link.contains("prog/xdp"), "a failed start left XDP attached: {link}");
        let check = with_caps(&lab, &fewer, &["check", "--iface", SHIELD_IF]).output().unwrap();
        let text = String::from_utf8_lossy(&check.stdout);
        let finding = text
            .lines()
            .find(|l| l.starts_with("FAIL  capabilities"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(finding.contains(&format!("CAP_{}", missing.to_uppercase())), "{finding}");
    }
}

/// Every group of `systemd-analyze syscall-filter`: `@name` -> its entries (system calls and
/// nested `@groups`).
fn syscall_groups() -> std::collections::HashMap<String, Vec<String>> {
    let out =
        Command::new("systemd-analyze").args(["syscall-filter", "--no-pager"]).output().unwrap();
    let mut groups = std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{}", name.trim()));
            groups.insert(format!("@{}", name.trim()), Vec::new());
        } else if let Some(g) = &current {
            let entry = line.trim();
            if !entry.is_empty() && !entry.starts_with('#') {
                groups.get_mut(g).unwrap().push(entry.to_owned());
            }
        }
    }
    groups
}

fn expand(
    entry: &str,
    groups: &std::collections::HashMap<String, Vec<String>>,
    out: &mut std::collections::BTreeSet<String>,
) {
    if entry.starts_with('@') {
        for e in groups.get(entry).unwrap_or_else(|| panic!("no syscall group {entry}")) {
            expand(e, groups, out);
        }
    } else {
        out.insert(entry.to_owned());
    }
}

/// The system calls the unit's SystemCallFilter= lines allow: the first line is an allow list,
/// later `~` lines take from it (systemd.exec(5)); a few calls are always allowed.
fn unit_allowed_syscalls() -> std::collections::BTreeSet<String> {
    let groups = syscall_groups();
    let mut allowed = std::collections::BTreeSet::new();
    for name in ["execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"] {
        allowed.insert(name.to_owned());
    }
    for (i, line) in unit_values("SystemCallFilter").into_iter().enumerate() {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        assert!(i > 0 || !deny, "the first SystemCallFilter= is an allow list");
        let mut set = std::collections::BTreeSet::new();
        for entry in list.split_whitespace() {
            expand(entry, &groups, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

#[test]
fn the_units_syscall_filter_and_address_families_allow_what_serve_uses() {
    let allowed = unit_allowed_syscalls();
    assert!(allowed.contains("bpf") && allowed.contains("socket") && !allowed.contains("mount"));
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let trace = std::env::temp_dir().join(format!("synshield-strace-{}", std::process::id()));
    let mut child = lab
        .shield
        .command("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_synshield"))
        .args(["serve", "--iface", SHIELD_IF, "--port", "7", "--metrics", "127.0.0.1:9100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let _stderr = lines(child.stderr.take().unwrap());
    // The guard kills strace (by its PID) if the test fails before the end.
    let mut guard = common::Synshield { child, stdout, stderr: std::sync::mpsc::channel().1 };
    wait_for_line(&guard.stdout, |l| l.starts_with("synshield: attached")).unwrap();
    // Serve a connection and the metrics, then stop: every path a running service takes.
    lab.client
        .enter(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect((tcp_user::lab::SHIELD_V4, 7)).unwrap();
            s.write_all(b"ping\n").unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
        })
        .unwrap();
    lab.shield
        .enter(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9100").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut page = String::new();
            s.read_to_string(&mut page).unwrap();
            assert!(page.contains("synshield_info"));
        })
        .unwrap();
    // SIGTERM to synshield itself (strace's child), so that it stops as under systemd.
    let strace_pid = guard.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap();
    let synshield_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: signalling the synshield process this test started (through strace).
    assert_eq!(unsafe { libc::kill(synshield_pid, libc::SIGTERM) }, 0);
    assert!(guard.child.wait().unwrap().success(), "synshield stopped cleanly under strace");

    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    let mut used = std::collections::BTreeSet::new();
    let mut families = std::collections::BTreeSet::new();
    for line in text.lines() {
        // "PID  name(args...) = result"; resumed calls and signals carry no new name.
        let call = line.split_once(' ').map_or("", |(_, rest)| rest.trim_start());
        if call.starts_with("<...") || call.starts_with("---") || call.starts_with("+++") {
            continue;
        }
        if let Some((name, args)) = call.split_once('(') {
            used.insert(name.to_owned());
            if name == "socket" {
                families.insert(args.split(',').next().unwrap().to_owned());
            }
        }
    }
    assert!(
        used.contains("bpf") && (used.contains("epoll_wait") || used.contains("epoll_pwait")),
        "{used:?}"
    );
    let refused: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    assert!(refused.is_empty(), "SystemCallFilter= would refuse {refused:?} (used: {used:?})");
    let permitted = unit_values("RestrictAddressFamilies");
    let permitted: Vec<&str> = permitted.iter().flat_map(|l| l.split_whitespace()).collect();
    for f in &families {
        assert!(
            permitted.contains(&f.as_str()),
            "RestrictAddressFamilies= would refuse {f} (used: {families:?})"
        );
    }
    assert!(families.contains("AF_XDP"), "{families:?}");
}
