//! What synshield holds and how it ends, tried as an attacker or an operator would: the
//! privileges it keeps, a data-path thread that fails, a `kill -9`.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Synshield, lab, metric, wait_for_line, wait_metric, wait_metric_at_least};
use tcp_user::lab::{CLIENT_IF, Lab, SHIELD_IF, SHIELD_V4};

const PORT: u16 = 7;

fn serve_args(extra: &[&'static str]) -> Vec<&'static str> {
    common::serve_args("7", extra)
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

/// Waits (bounded) until `sample` reaches `value`: counters are published four times a second.
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
fn sighup_without_a_key_file_reloads_nothing_and_ends_nothing() {
    // `systemctl reload` sends SIGHUP, whose default action would end the process.
    let lab = lab();
    let mut s = Synshield::start(&lab.shield, &serve_args(&["--app", "http"]));
    let pid = i32::try_from(s.child.id()).unwrap();
    // SAFETY: signalling the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for_line(&s.stderr, |l| l.contains("SIGHUP: nothing to reload"))
        .unwrap_or_else(|seen| panic!("no word of the SIGHUP; stderr: {seen:?}"));
    assert!(s.child.try_wait().unwrap().is_none(), "still running");
    assert!(http_get_close(&lab).starts_with("HTTP/1.1 200 OK"));
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

/// The id of the map named `name` that process `pid` holds (found through its descriptors:
/// parallel tests each run their own synshield with its own maps).
fn map_id_of(pid: u32, name: &str) -> u32 {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let info = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")) else { continue };
        let id: u32 = id.trim().parse().unwrap();
        let shown = std::process::Command::new("bpftool")
            .args(["map", "show", "id", &id.to_string()])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&shown.stdout).contains(&format!(" name {name} ")) {
            return id;
        }
    }
    panic!("process {pid} holds no map named {name}");
}

fn hex_args(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn an_orphan_flow_entry_is_removed_by_the_reconciler() {
    let lab = lab();
    let s = Synshield::start(&lab.shield, &serve_args(&["--test-reconcile-every", "1"]));
    let id = map_id_of(s.child.id(), "SYNSHIELD_FLOWS").to_string();
    // An entry no connection owns and no frame will ever reach again: as if a client's
    // third ACK had been lost on its way to userspace and the client vanished.
    let mut key = Vec::new();
    key.extend([0u8; 10].iter().chain(&[0xff, 0xff, 198, 18, 0, 99])); // 198.18.0.99
    key.extend([0u8; 10].iter().chain(&[0xff, 0xff, 198, 18, 0, 2])); // 198.18.0.2
    key.extend(40_000u16.to_ne_bytes());
    key.extend(PORT.to_ne_bytes());
    let mut value = vec![0u8; 28];
    value[24..26].copy_from_slice(&1460u16.to_ne_bytes());
    let mut update = vec![
        "map".to_owned(),
        "update".into(),
        "id".into(),
        id.clone(),
        "key".into(),
        "hex".into(),
    ];
    update.extend(hex_args(&key));
    update.extend(["value".into(), "hex".into()]);
    update.extend(hex_args(&value));
    let out = std::process::Command::new("bpftool").args(&update).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lookup = |id: &str| {
        let mut args = vec!["map".to_owned(), "lookup".into(), "id".into(), id.to_owned()];
        args.extend(["key".into(), "hex".into()]);
        args.extend(hex_args(&key));
        std::process::Command::new("bpftool").args(&args).output().unwrap().status.success()
    };
    assert!(lookup(&id), "the entry is in the map");
    // Two scans a second apart: gone, and counted.
    wait_metric(&lab, "synshield_flow_orphans_removed_total", 1);
    assert!(!lookup(&id), "the orphan entry was removed");
}

/// An address added to the interface while synshield runs (a service address moved here on
/// failover, say) is protected from then on; one removed is no longer answered for.
#[test]
fn an_address_added_while_serving_is_answered_and_one_removed_is_not() {
    const MOVED: &str = "198.18.0.77";
    let lab = lab();
    let s = Synshield::start(&lab.shield, &serve_args(&["--app", "http"]));
    let to = SocketAddr::from(([198, 18, 0, 77], PORT));
    let get = move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok::<_, std::io::Error>(out)
    };

    lab.shield.run("ip", &["addr", "add", &format!("{MOVED}/24"), "dev", SHIELD_IF]).unwrap();
    let line = wait_for_line(&s.stderr, |l| l.contains("addresses changed") && l.contains(MOVED))
        .unwrap_or_else(|seen| panic!("no word of the new address; stderr: {seen:?}"));
    assert!(line.contains("SYNs are answered for the new list"), "{line}");
    // Nothing listens on port 7 in the kernel: only synshield can answer this.
    let reply = lab.client.enter(get).unwrap().unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let refused =
        metric(&lab, "synshield_xdp_frames_total{verdict=\"drop_not_local_destination\"}");

    lab.shield.run("ip", &["addr", "del", &format!("{MOVED}/24"), "dev", SHIELD_IF]).unwrap();
    wait_for_line(&s.stderr, |l| l.contains("addresses changed") && !l.contains(MOVED))
        .unwrap_or_else(|seen| panic!("no word of the removed address; stderr: {seen:?}"));
    // The client still knows the MAC: its SYN reaches the shield, which no longer answers.
    let mac = Lab::mac(&lab.shield, SHIELD_IF).unwrap().map(|b| format!("{b:02x}")).join(":");
    lab.client.run("ip", &["neigh", "replace", MOVED, "lladdr", &mac, "dev", CLIENT_IF]).unwrap();
    assert!(lab.client.enter(get).unwrap().is_err(), "a SYN to a removed address is answered");
    let after = wait_metric_at_least(
        &lab,
        "synshield_xdp_frames_total{verdict=\"drop_not_local_destination\"}",
        refused + 1,
    );
    assert!(after > refused);
}

/// A child process, killed (by its PID) and reaped when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[test]
fn closed_stdout_and_stderr_end_nothing() {
    // Output to a pipe whose reader went away (`synshield serve | tee log` with tee killed, a
    // log collector restarted): a write fails with EPIPE, and Rust's print macros panic on
    // that. The shield must go on serving and logging to nowhere.
    const MOVED: &str = "198.18.0.77";
    let lab = lab();
    let args = ["serve", "--iface", SHIELD_IF, "--port", "7", "--app", "http"];
    let child = lab
        .shield
        .command(env!("CARGO_BIN_EXE_synshield"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Reap(child);
    let mut out = std::io::BufReader::new(guard.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("synshield: attached") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "no attach line");
    }
    drop(out);
    drop(guard.0.stderr.take());

    // A log line into the closed stderr: the address follower's, seen done when the new
    // address is answered.
    lab.shield.run("ip", &["addr", "add", &format!("{MOVED}/24"), "dev", SHIELD_IF]).unwrap();
    let to = SocketAddr::from(([198, 18, 0, 77], PORT));
    let deadline = std::time::Instant::now() + common::EVENT_DEADLINE;
    while lab
        .client
        .enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)))
        .unwrap()
        .is_err()
    {
        let ended = guard.0.try_wait().unwrap();
        assert!(std::time::Instant::now() < deadline && ended.is_none(), "not answered: {ended:?}");
    }
    // Status lines into the closed stdout, one a second: nothing tells when one was written,
    // so two periods pass.
    std::thread::sleep(Duration::from_millis(2200));
    assert!(guard.0.try_wait().unwrap().is_none(), "synshield ended: {:?}", guard.0.try_wait());
    assert!(http_get_close(&lab).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn a_deleted_interface_ends_serve_with_one_sentence() {
    // The XDP program goes with its interface: a shield that ran on would protect nothing
    // and look healthy. It exits (the systemd unit restarts it).
    let lab = lab();
    let mut s = Synshield::start(&lab.shield, &serve_args(&["--app", "http"]));
    assert!(http_get_close(&lab).starts_with("HTTP/1.1 200 OK"));
    lab.shield.run("ip", &["link", "del", "dev", SHIELD_IF]).unwrap();
    let line = wait_for_line(&s.stderr, |l| l.starts_with("synshield: "))
        .unwrap_or_else(|seen| panic!("no sentence; stderr: {seen:?}"));
    assert!(line.contains("shield0 is gone") && line.contains("start it again"), "{line}");
    assert_eq!(s.child.wait().unwrap().code(), Some(1), "{line}");
}

#[test]
fn an_mtu_change_while_serving_is_logged_with_what_to_do() {
    // The SYN-ACKs' MSS was clamped to the MTU at the start: after a change it no longer
    // fits, and the operator is told so, once.
    let lab = lab();
    let s = Synshield::start(&lab.shield, &serve_args(&["--app", "http"]));
    lab.shield.run("ip", &["link", "set", "dev", SHIELD_IF, "mtu", "1400"]).unwrap();
    let line = wait_for_line(&s.stderr, |l| l.contains("MTU changed"))
        .unwrap_or_else(|seen| panic!("no word of the MTU; stderr: {seen:?}"));
    assert!(line.contains("was=1500") && line.contains("now=1400"), "{line}");
    assert!(line.contains("restart synshield"), "{line}");
    assert!(http_get_close(&lab).starts_with("HTTP/1.1 200 OK"));
}
