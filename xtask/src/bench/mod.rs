//! `cargo xtask bench`: the speed and memory benchmarks, written to `BENCHMARKS.md` with the
//! machine, the command and the date (tests never assert wall-clock times; this is where speed
//! is measured). Sections:
//!
//! 1. the TCP engine in memory (`tcp-engine`'s `engine_bench` example);
//! 2. the XDP program's cost per SYN under BPF_PROG_TEST_RUN (`tcp-user`'s `xdp_bench` example),
//!    cookie mode and adaptive mode under flood (switched to cookies, its SYNs still counted);
//! 3. a SYN flood in the lab (`flood.rs`): trafgen on one CPU in the client namespace against
//!    five receivers on shield0 in turn: the kernel's SYN cookies, a native XDP_DROP program
//!    (the most a receiver can absorb on this link), a native XDP_TX reflector (the most any
//!    XDP_TX answer can reach), and synshield with `--mode cookies` and `--mode adaptive`;
//! 4. the user's own load test (`loadtest.rs`): real clients connect and exchange data in peace
//!    and under a hping3 flood, against the kernel's cookies (`tcp_syncookies=1` and `=2`),
//!    nftables synproxy and synshield in adaptive and cookie mode, with issue 11's goals
//!    (adaptive's p99 in peace, its SYN-ACK rate under flood) judged from the same run;
//! 5. loss (`loss.rs`): reassembly under the worst out-of-order pattern, and goodput through
//!    synshield under random loss next to Linux-to-Linux under the same loss.
//!
//! # How the lab flood counts
//!
//! ```text
//!  client netns                                   shield netns
//!  trafgen ─► client0 ══════════ veth ══════════ shield0 ─► receiver (kernel, XDP_DROP,
//!                                                          XDP_TX, synshield cookies/adaptive)
//!             [XDP_DROP sink] ◄─ SYN-ACKs ──────────┘
//! ```
//!
//! The client is a traffic generator and nothing else: a native XDP_DROP program on client0
//! counts and drops every answer, so the client kernel never answers a SYN-ACK with a RST on the
//! sender's CPU (with the lab's XDP_PASS it would, and a faster shield would slow its own
//! sender). Any XDP program on the peer is what native XDP_TX on a veth needs to deliver at all.
//!
//! veth counters on this kernel (drivers/net/veth.c, `veth_xmit` and `veth_get_stats64`), checked
//! on 6.18 against `trafgen -n`'s own count, `TcpExtSyncookiesSent` and `ethtool -S`: once the
//! receiving end has an XDP program, the frames it takes are counted by its per-queue
//! `xdp_packets`, which appear as its `rx_packets` and as the sending peer's `tx_packets`;
//! without XDP the sender's `tx_packets` and the receiver's `rx_packets` count the same frames;
//! frames the receiving end cannot take (ring or backlog full) count as the sender's
//! `tx_dropped`; native XDP_TX frames the peer refuses count as the transmitter's `tx_dropped`
//! (`xdp_tx_errors`), and those it takes as the peer's `rx_packets` (the XDP_TX reflector row:
//! shield0 `xdp_tx` equals client0 `rx_packets`). Hence, over the measured window:
//!
//! - **sender**: client0 `tx_packets + tx_dropped`, everything trafgen pushed into the veth;
//! - **reached shield0**: shield0 `rx_packets`;
//! - **answers delivered**: client0 `rx_packets`: every frame the client's XDP sink saw, which is
//!   every frame the shield sent (kernel or XDP_TX), and nothing the shield failed to send;
//! - **the shield's own SYN-ACK count**: `TcpExtSyncookiesSent` for the kernel, synshield's
//!   `tx_synack` counter (from its status lines) for ours.
//!
//! The reported rate, "SYN-ACKs answered per second", is the smaller of the last two for both
//! the kernel and synshield: a SYN-ACK counts when the shield says it made one and the client
//! received it. Either count alone can mislead: a shield that answers RST (no listener, or an
//! XDP program that passes SYNs to a kernel without one) is seen by the client but counts no
//! SYN-ACK; an XDP_TX frame the peer refuses is counted by the program but never delivered.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead as _, BufReader};
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::build::{build, host_cargo};
use crate::lab::{
    CLIENT_IF, CLIENT_V4, Lab, LabOptions, Netns, SHIELD_IF, SHIELD_V4, XdpAction, XdpAttachMode,
    attach_xdp_action,
};
use crate::root;
use crate::setup::setup;

mod counters;
mod datapath;
mod examples;
mod flood;
pub mod hold;
mod loadtest;
mod loss;
mod plot;
mod process;

use counters::{Snapshot, status_tx_synack};
use datapath::datapath_section;
use examples::{engine_section, xdp_test_run_section};
use flood::lab_section;
use loadtest::load_section;
use loss::loss_section;
use process::{Interrupted, Interrupts, Process, TempDir, read_some};

/// The report, at the root of the repository.
const REPORT: &str = "BENCHMARKS.md";

/// The TCP port the floods aim at.
const BENCH_PORT: u16 = 80;

/// How long each flood runs: a warm-up that is not measured, then the measured window.
#[derive(Clone, Copy, Debug)]
struct Timing {
    warmup: Duration,
    window: Duration,
}

const FULL: Timing = Timing { warmup: Duration::from_secs(1), window: Duration::from_secs(10) };
const QUICK: Timing = Timing { warmup: Duration::from_millis(500), window: Duration::from_secs(3) };

/// Packet budget of a flood (trafgen `--num`) per second of its time bound: ten times what one
/// CPU pushes into a veth here (~0.35 M pps), so it bounds the flood without ending it early.
const MAX_SENDER_PPS: u64 = 3_000_000;

/// Added to warm-up and window for the flood's time bound (`timeout`), and waited at most for a
/// process to start or to stop.
const GRACE: Duration = Duration::from_secs(5);

/// synshield's `--grace` (seconds) in the flood benchmarks, below [`GRACE`]: in adaptive mode
/// the SYNs of a flood that arrive before the switch to cookies open half-open entries to
/// addresses that never answer, and a graceful stop sends each a FIN and waits for them for
/// the whole grace period (5 s by default, as long as xtask waits before killing it).
const SYNSHIELD_GRACE: &str = "1";

/// Upper bound for synshield to load and attach (verifier included) or trafgen to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Runs every benchmark, writes `BENCHMARKS.md` and prints it.
pub fn bench(quick: bool, only: Option<&str>) -> Result<()> {
    setup()?;
    let built = build()?;
    let timing = if quick { QUICK } else { FULL };
    let mut command =
        String::from(if quick { "cargo xtask bench --quick" } else { "cargo xtask bench" });
    if let Some(o) = only {
        let _ = write!(command, " --only {o}");
    }

    let mut report = header(&command, quick);
    let mut failed = Vec::new();
    let sections: [(&str, &str, &SectionFn); 6] = [
        ("engine", "TCP engine", &|| engine_section().map(Section::complete)),
        ("xdp", "XDP program per SYN", &|| xdp_test_run_section().map(Section::complete)),
        ("flood", "SYN flood in the lab", &|| lab_section(&built.synshield, timing)),
        ("datapath", "Data path in the lab", &|| datapath_section(&built.synshield, quick)),
        ("load", "Load test: real clients in peace and under a hping3 flood", &|| {
            load_section(&built.synshield, timing)
        }),
        ("loss", "Loss: reassembly and goodput under loss", &|| {
            loss_section(&built.synshield, quick)
        }),
    ];
    // A section's name chooses that section alone (`--only flood` is not also the load test,
    // whose title has "flood" in it); other words choose every section whose title has them.
    let exact = only.is_some_and(|o| sections.iter().any(|(name, ..)| *name == o.to_lowercase()));
    let chosen = |name: &str, title: &str| {
        only.is_none_or(|o| {
            let o = o.to_lowercase();
            name == o || (!exact && title.to_lowercase().contains(&o))
        })
    };
    ensure!(
        sections.iter().any(|(name, title, _)| chosen(name, title)),
        "no benchmark section matches {:?}: choose from {}",
        only.unwrap_or_default(),
        sections.iter().map(|(name, ..)| *name).collect::<Vec<_>>().join(", ")
    );
    for (name, title, run) in sections {
        if !chosen(name, title) {
            continue;
        }
        println!("\n==> xtask bench: {title}");
        match run() {
            Ok(section) => {
                report.push_str(&section.text);
                if section.incomplete {
                    failed.push(title);
                }
            }
            Err(e) if e.is::<Interrupted>() => {
                return Err(e.context("BENCHMARKS.md left as it was"));
            }
            Err(e) => {
                eprintln!("xtask bench: {title} failed: {e:#}");
                let _ = write!(report, "## {title}\n\n**Failed:** {}\n\n", brief_error(&e));
                failed.push(title);
            }
        }
    }

    let _ = writeln!(report, "Load average at the end of the run: {}.", load_average());
    // A partial run does not replace the report: it goes next to the build output.
    let path = match only {
        None => root().join(REPORT),
        Some(o) => root().join("target").join(format!("bench-{o}.md")),
    };
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("\n{report}");
    println!("xtask bench: written to {}", path.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {} (see {REPORT})", failed.join(", "));
    }
    Ok(())
}

/// What measures one section.
type SectionFn<'a> = dyn Fn() -> Result<Section> + 'a;

/// `/proc/loadavg`'s three load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A warning for the report when the machine was busy (other sessions share its CPUs): a
/// one-minute load average above half the CPUs means the figures are likely low.
fn busy_note(load: &str, cpus: usize) -> Option<String> {
    let one: f64 = load.split_whitespace().next()?.parse().ok()?;
    #[expect(clippy::cast_precision_loss, reason = "a CPU count")]
    let busy = one > 0.5 * cpus.max(1) as f64;
    busy.then(|| {
        format!(
            "**Note:** the machine was busy when this run started (load average {load} on {cpus} \
             CPUs, shared with other work): rates are likely lower, and latencies higher, than on \
             a quiet machine. The load average at the end is at the bottom.\n\n"
        )
    })
}

/// A section of the report, and whether part of it could not be measured.
struct Section {
    text: String,
    incomplete: bool,
}

impl Section {
    fn complete(text: String) -> Section {
        Section { text, incomplete: false }
    }
}

/// An error on one line for the report, cut short: a verifier log runs to hundreds of
/// kilobytes (the whole error is printed on standard error).
fn brief_error(e: &anyhow::Error) -> String {
    const MAX: usize = 600;
    let text = format!("{e:#}").replace('\n', " ");
    match text.char_indices().nth(MAX) {
        None => text,
        Some((cut, _)) => format!("{} [... {} more bytes]", &text[..cut], text.len() - cut),
    }
}

// ---------------------------------------------------------------------------------------------
// The header: date, machine, command.

fn header(command: &str, quick: bool) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    let load = load_average();
    let tree = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    #[expect(clippy::cast_precision_loss, reason = "memory size for people")]
    let mem_gib = memory_kib as f64 / f64::from(1 << 20);
    let mut s = String::from("# Benchmarks\n\n");
    s.push_str(
        "Written by `cargo xtask bench`, which overwrites this file on every run. Tests never \
         assert wall-clock times; speed and memory are measured here.\n\n",
    );
    if quick {
        s.push_str(
            "**Quick run** (`--quick`): 3-second floods, for development; the numbers are noisier \
             than a full run's.\n\n",
        );
    }
    if let Some(note) = busy_note(&load, cpus) {
        s.push_str(&note);
    }
    let _ = write!(
        s,
        "| | |\n|---|---|\n\
         | date | {date} |\n\
         | command | `{command}` (as root) |\n\
         | machine | {cpu}, {cpus} CPUs, {mem_gib:.1} GiB memory |\n\
         | kernel | Linux {kernel} |\n\
         | load average at start | {load} |\n\
         | tree | `{tree}` |\n\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_machine_is_noted() {
        assert!(busy_note("1.50 1.20 0.90", 2).is_some_and(|n| n.contains("load average 1.50")));
        assert!(busy_note("0.40 1.20 0.90", 2).is_none());
        assert!(busy_note("", 2).is_none());
    }
}
