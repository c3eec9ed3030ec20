//! `synshield check` in the lab: what it finds on a veth that synshield can use, and the
//! sentences it gives for a served port and an interface that already has an XDP program.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::process::Output;

use tcp_user::lab::{Lab, LabOptions, SHIELD_IF, XdpAction, XdpAttachMode, attach_xdp_action};

fn check(lab: &Lab, args: &[&str]) -> (Output, String) {
    let out = lab
        .shield
        .command(env!("CARGO_BIN_EXE_synshield"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn line<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(what)))
        .unwrap_or_else(|| panic!("no {what} line in\n{text}"))
}

#[test]
fn check_passes_on_the_lab_veth_and_leaves_nothing_attached() {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let (out, text) = check(&lab, &["--iface", SHIELD_IF, "--port", "7,80", "--attach-test"]);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(line(&text, "interface").contains("driver veth"), "{text}");
    assert!(
        line(&text, "XDP modes").starts_with("ok    XDP modes      native and generic"),
        "{text}"
    );
    assert!(line(&text, "port 7 ").starts_with("ok"), "{text}");
    assert!(line(&text, "port 80 ").starts_with("ok"), "{text}");
    assert!(line(&text, "capabilities").starts_with("ok"), "{text}");
    assert!(text.ends_with(&format!("synshield can run on {SHIELD_IF}.\n")), "{text}");
    let link = lab.shield.run("ip", &["-d", "link", "show", "dev", SHIELD_IF]).unwrap();
    assert!(!link.contains("prog/xdp"), "the attach test left a program behind: {link}");
}

#[test]
fn check_fails_on_a_served_port_and_an_interface_in_use_with_advice() {
    let lab = Lab::new().unwrap();
    let _service = lab.shield.enter(|| std::net::TcpListener::bind("[::]:7")).unwrap().unwrap();
    let _other_xdp = lab
        .shield
        .enter(|| attach_xdp_action(SHIELD_IF, XdpAction::Pass, XdpAttachMode::Generic))
        .unwrap()
        .unwrap();
    let (out, text) = check(&lab, &["--iface", SHIELD_IF, "--port", "7"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let port = line(&text, "port 7 ");
    assert!(port.starts_with("FAIL") && port.contains("ss -ltnp sport = :7"), "{text}");
    let busy = line(&text, "XDP in use");
    assert!(busy.starts_with("FAIL") && busy.contains("xdp off"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 check(s) failed"), "{stderr}");
}
