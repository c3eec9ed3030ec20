//! What synshield holds and how it ends, tried as an attacker or an operator would: the
//! privileges it keeps, a data-path thread that fails, a `kill -9`.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{EVENT_DEADLINE, Synshield, wait_for_line};
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF, SHIELD_V4};

const PORT: u16 = 7;
const METRICS: &str = "127.0.0.1:9100";

fn lab() -> Lab {
    Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap()
}

fn serve_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "serve", "--iface", SHIELD_IF, "--port", "7", "--xdp-mode", "native", "--quiet",
        "--metrics", METRICS,
    ];
    args.extend(extra);
    args
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn metric(lab: &Lab, sample: &str) -> u64 {
    let text = lab
        .shield
        .enter(|| {
            let mut s = TcpStream::connect(METRICS).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// Waits (bounded) until `sample` reaches `value`: counters are published four times a second.
fn wait_metric(lab: &Lab, sample: &str, value: u64) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    while metric(lab, sample) != value {
        assert!(Instant::now() < deadline, "{sample} never reached {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get_close(lab: &Lab) -> String {
    let addr = SocketAddr::from((SHIELD_V4, PORT));
    lab.client
        .enter(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap()
}

fn xdp_attached(lab: &Lab) -> bool {
    lab.shield.run("ip", &["link", "show", "dev", SHIELD_IF]).unwrap().contains("xdp")
}

#[test]
fn serve_keeps_no_capability_once_attached() {
    let lab = lab();
    let s = Synshield::start(&lab.shield, &serve_args(&["--app", "http"]));
    let pid = s.child.id();
    for field in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(status_field(pid, field), "0000000000000000", "{field}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // Every thread, not only the main one: capabilities are per thread.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().file_name().into_string().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status")).unwrap();
        assert!(status.contains("CapEff:\t0000000000000000"), "thread {task}: {status}");
    }
    // And it still does its work without them: the server closes first, so the connection's
    // flow-map entry is marked TIME-WAIT (a map update through a descriptor).
    for _ in 0..3 {
        assert!(http_get_close(&lab).starts_with("HTTP/1.1 200 OK"));
    }
    wait_metric(&lab, "synshield_time_wait_entered_total", 3);
    assert_eq!(metric(&lab, "synshield_flow_map_errors_total"), 0);
}

#[test]
fn a_failed_data_path_ends_the_process_with_one_sentence_and_detaches() {
    let lab = lab();
    let mut s = Synshield::start(&lab.shield, &serve_args(&["--test-fail-after-frames", "1"]));
    assert!(xdp_attached(&lab));
    // The first frame that reaches the data path makes its shard panic.
    let addr = SocketAddr::from((SHIELD_V4, PORT));
    let _ = lab.client.enter(move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        c.write_all(b"bye")
    });
    let sentence = wait_for_line(&s.stderr, |l| l.contains("the data path of RX queue"))
        .unwrap_or_else(|seen| panic!("no sentence; stderr: {seen:?}"));
    assert!(sentence.contains("synshield exits"), "{sentence}");
    assert!(sentence.contains("restart it"), "{sentence}");
    let status = s.child.wait().unwrap();
    assert!(!status.success(), "exited with {status}");
    assert!(!xdp_attached(&lab), "the XDP program left with the process");
}

#[test]
fn kill_9_leaves_no_xdp_program_and_a_restart_works_at_once() {
    let lab = lab();
    let mut s = Synshield::start(&lab.shield, &serve_args(&[]));
    assert!(xdp_attached(&lab));
    s.child.kill().unwrap(); // SIGKILL: no clean-up code runs
    s.child.wait().unwrap();
    // The program hangs on a BPF link the process held: the kernel detached it.
    assert!(!xdp_attached(&lab), "program left attached after kill -9");
    // A new instance attaches at once and serves.
    let _again = Synshield::start(&lab.shield, &serve_args(&[]));
    let addr = SocketAddr::from((SHIELD_V4, PORT));
    let echoed = lab
        .client
        .enter(move || {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"again").unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            b
        })
        .unwrap();
    assert_eq!(&echoed, b"again");
}
