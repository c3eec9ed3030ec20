//! `synshield top` and the status line on a real terminal (tmux), in the lab: the screen shows
//! the counters moving during a bounded hping3 SYN flood, `q` quits, and the plain status line
//! never wraps past the terminal's width.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;
mod support;

use common::Synshield;
use support::{Flood, Tmux};
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF};

const PORT: u16 = 7;
const METRICS: &str = "127.0.0.1:9100";

/// The figures of one row of top's table: (rate per second, total), as shown.
fn row(screen: &str, label: &str) -> Option<(String, String)> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    let mut fields = rest.split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

/// A shown number (`987`, `12.5k`, `1.2M`) as a value.
fn value(shown: &str) -> f64 {
    let s = shown.trim_end_matches("/s");
    let (num, scale) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1e3),
        Some('M') => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    num.parse::<f64>().map_or(0.0, |n| n * scale)
}

#[test]
fn top_shows_the_counters_moving_during_a_bounded_flood_and_quits_on_q() {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let port = PORT.to_string();
    let _synshield = Synshield::start(
        &lab.shield,
        // Cookies for every SYN: the flood below is answered by the cookie row, and leaves
        // no connection behind (adaptive mode would answer its first SYNs with state).
        &[
            "serve",
            "--iface",
            SHIELD_IF,
            "--port",
            &port,
            "--quiet",
            "--metrics",
            METRICS,
            "--mode",
            "cookies",
        ],
    );
    let top = Tmux::start(
        110,
        30,
        &format!(
            "ip netns exec {} {} top --metrics {METRICS}",
            lab.shield.name(),
            env!("CARGO_BIN_EXE_synshield")
        ),
    );
    let before = top.wait_for("the title and the table", |s| {
        s.contains(&format!("synshield on {SHIELD_IF} (native XDP) · mode: SYN cookies"))
            && row(s, "SYN-ACK sent (cookie)").is_some()
    });
    assert_eq!(row(&before, "SYN-ACK sent (cookie)").unwrap().1, "0", "{before}");

    // At most 5 s and 200 000 SYNs.
    let flood = Flood::start(&lab, PORT, 5, 200_000);
    let during = top.wait_for("a SYN-ACK rate above 1000/s", |s| {
        row(s, "SYN-ACK sent (cookie)").is_some_and(|(rate, _)| value(&rate) > 1000.0)
    });
    let (_, syn_total) = row(&during, "SYN received").unwrap();
    assert!(value(&syn_total) > 0.0, "{during}");
    let spark = during.lines().find(|l| l.contains("SYN-ACK sent (cookie)")).unwrap();
    assert!(spark.contains(['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']), "a sparkline: {spark}");
    assert!(flood.wait().code().is_some(), "the flood ended by its time bound");

    // After the flood: the rate falls back to nothing, the total stays, no connection was
    // opened for the flood (SYN cookies keep no state).
    let after = top.wait_for("the rate back at 0/s", |s| {
        row(s, "SYN-ACK sent (cookie)").is_some_and(|(rate, _)| rate == "0/s")
    });
    let (_, total) = row(&after, "SYN-ACK sent (cookie)").unwrap();
    assert!(value(&total) >= 1000.0, "{after}");
    assert!(after.contains("│0 open"), "no connection for the flood: {after}");

    top.send_keys("q");
    let deadline = std::time::Instant::now() + support::DEADLINE;
    while top.alive() {
        assert!(std::time::Instant::now() < deadline, "top did not quit on q:\n{}", top.screen());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Checks a screen of `serve` on a terminal `width` columns wide, read with rows that the
/// terminal wrapped joined (`capture-pane -J`), so that a status line that wrapped shows as
/// one line wider than the terminal: one status line, within the width, the last line; log
/// lines above it, none run into it.
fn assert_one_status_line_at_the_bottom(joined: &str, width: u16) {
    let status: Vec<&str> = joined.lines().filter(|l| l.starts_with("mode ")).collect();
    assert!(
        status.iter().all(|l| l.chars().count() <= usize::from(width)),
        "a status line wider than the terminal:\n{joined}"
    );
    assert_eq!(status.len(), 1, "one status line, rewritten in place:\n{joined}");
    let last = joined.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(last.starts_with("mode "), "the status line is the last one:\n{joined}");
}

#[test]
fn the_status_line_is_cut_to_a_narrow_terminal_and_log_lines_go_above_it() {
    let lab =
        Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() }).unwrap();
    let width = 40;
    let serve = Tmux::start(
        width,
        40,
        &format!(
            "ip netns exec {} {} serve --iface {SHIELD_IF} --port {PORT}",
            lab.shield.name(),
            env!("CARGO_BIN_EXE_synshield")
        ),
    );
    // `mode adaptive:stateful | rx 7 (0/s) | ...`: the SYN answer first, then the counters.
    serve.wait_for("the first status line", |s| s.lines().any(|l| l.starts_with("mode ")));
    // A log line from another thread while the status line is up: an address added to the
    // interface (the address follower logs it).
    lab.shield.run("ip", &["addr", "add", "198.18.0.77/24", "dev", SHIELD_IF]).unwrap();
    serve.wait_for("the address change in the log", |s| s.contains("198.18.0.77"));
    assert_one_status_line_at_the_bottom(&serve.joined_screen(), width);

    // A few flood SYNs make the line long (rx, pass_not_ip, tx_synack, conns) and log the
    // switch to cookies.
    let flood = Flood::start(&lab, PORT, 1, 1000);
    flood.wait();
    let rx = |l: &str| {
        l.split(" | ").find_map(|f| f.strip_prefix("rx "))?.split(' ').next()?.parse::<u64>().ok()
    };
    serve.wait_for("the flood's frames on a status line cut with …", |s| {
        s.lines().any(|l| rx(l).is_some_and(|n| n >= 500) && l.ends_with('…'))
    });
    assert_one_status_line_at_the_bottom(&serve.joined_screen(), width);
}

/// The children of process `pid` (its threads' lists together).
fn children(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn top_quits_when_its_terminal_hangs_up_without_a_sighup() {
    // top behind a shell that ignores SIGHUP (as under nohup, or under `cargo xtask run`,
    // where only the session leader is told): the terminal closing is all it learns. No
    // synshield to watch: top shows the scrape error and keeps going until then.
    let mut term = Tmux::start(
        100,
        30,
        &format!(
            "bash -c 'trap \"\" HUP; {} top --metrics 127.0.0.1:1; true'",
            env!("CARGO_BIN_EXE_synshield")
        ),
    );
    term.wait_for("top's title", |s| s.contains("synshield on"));
    let top = children(term.pane_pid());
    assert_eq!(top.len(), 1, "bash runs top: {top:?}");
    let exit = support::Exit::watch(top[0]);
    term.hang_up();
    let exited = exit.wait(support::DEADLINE);
    if !exited {
        // SAFETY: the process we started; the pidfd keeps its pid from being reused.
        unsafe { libc::kill(top[0], libc::SIGKILL) };
    }
    assert!(exited, "top still runs on a terminal that hung up");
}
