//! `cargo xtask bench`: the speed and memory benchmarks, written to `BENCHMARKS.md` with the
//! machine, the command and the date (tests never assert wall-clock times; this is where speed
//! is measured). Three sections:
//!
//! 1. the TCP engine in memory (`tcp-engine`'s `engine_bench` example);
//! 2. the XDP program's cost per SYN under BPF_PROG_TEST_RUN (`tcp-user`'s `xdp_bench` example,
//!    once it exists);
//! 3. a SYN flood in the lab: trafgen on one CPU in the client namespace against four receivers
//!    on shield0 in turn: the kernel's SYN cookies, a native XDP_DROP program (the most a
//!    receiver can absorb on this link), a native XDP_TX reflector (the most any XDP_TX answer
//!    can reach) and synshield.
//!
//! # How the lab flood counts
//!
//! ```text
//!  client netns                                   shield netns
//!  trafgen ─► client0 ══════════ veth ══════════ shield0 ─► receiver (kernel, XDP_DROP,
//!                                                                  XDP_TX, synshield)
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

/// Upper bound for synshield to load and attach (verifier included) or trafgen to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Runs every benchmark, writes `BENCHMARKS.md` and prints it.
pub fn bench(quick: bool) -> Result<()> {
    setup()?;
    let built = build()?;
    let timing = if quick { QUICK } else { FULL };
    let command = if quick { "cargo xtask bench --quick" } else { "cargo xtask bench" };

    let mut report = header(command, quick);
    let mut failed = Vec::new();
    let sections: [(&str, &dyn Fn() -> Result<Section>); 3] = [
        ("TCP engine", &|| engine_section().map(Section::complete)),
        ("XDP program per SYN", &|| xdp_test_run_section().map(Section::complete)),
        ("SYN flood in the lab", &|| lab_section(&built.synshield, timing)),
    ];
    for (title, run) in sections {
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

    let path = root().join(REPORT);
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("\n{report}");
    println!("xtask bench: written to {}", path.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {} (see {REPORT})", failed.join(", "));
    }
    Ok(())
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
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
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

// ---------------------------------------------------------------------------------------------
// 1. The engine, and 2. the XDP program under BPF_PROG_TEST_RUN: examples that print Markdown.

fn engine_section() -> Result<String> {
    let mut cmd = host_cargo();
    cmd.args(["run", "--release", "--package", "tcp-engine", "--example", "engine_bench"]);
    example_output(&mut cmd, "TCP engine (tcp-engine)")
}

/// STEP FOR THE XDP PROGRAM'S OWNER: `tcp-user/examples/xdp_bench.rs` (not written here) prints,
/// as Markdown, ns per SYN under BPF_PROG_TEST_RUN for synshield's program, an XDP_DROP program
/// and a variant built on the kernel helper `bpf_tcp_raw_gen_syncookie_ipv4`. This step runs it
/// once the file exists.
fn xdp_test_run_section() -> Result<String> {
    const TITLE: &str = "XDP program per SYN (BPF_PROG_TEST_RUN)";
    if !root().join("tcp-user/examples/xdp_bench.rs").exists() {
        println!("xtask bench: tcp-user/examples/xdp_bench.rs does not exist yet");
        return Ok(format!("## {TITLE}\n\n(not available yet)\n\n"));
    }
    let mut cmd = host_cargo();
    // host_cargo exports the XDP object's path, so the example embeds the program just built.
    cmd.args(["run", "--release", "--package", "tcp-user", "--example", "xdp_bench"]);
    example_output(&mut cmd, TITLE)
}

/// Runs an example (cargo's progress on the terminal) and returns its standard output as a
/// Markdown section, headed with `title` unless the example wrote its own heading.
fn example_output(cmd: &mut Command, title: &str) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{shown} failed ({}); its output: {text}", out.status);
    let text = text.trim();
    let mut s = if text.starts_with('#') { String::new() } else { format!("## {title}\n\n") };
    s.push_str(text);
    s.push_str("\n\n");
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// 3. The SYN flood in the lab.

/// What answers the SYNs on shield0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    /// No XDP; a listening socket and `net.ipv4.tcp_syncookies=2` (a cookie for every SYN).
    KernelCookies,
    /// A native `r0 = XDP_DROP; exit`: the ceiling of a receiver on this link.
    XdpDrop,
    /// A native `r0 = XDP_TX; exit`, every frame sent back unchanged: the ceiling of any
    /// XDP_TX answer on this link, and a check that XDP_TX frames are counted as delivered.
    XdpTx,
    /// `synshield serve --xdp-mode native`.
    Synshield,
}

impl Receiver {
    const ALL: [Receiver; 4] =
        [Receiver::KernelCookies, Receiver::XdpDrop, Receiver::XdpTx, Receiver::Synshield];

    fn label(self) -> &'static str {
        match self {
            Receiver::KernelCookies => "kernel SYN cookies (`tcp_syncookies=2`, listener)",
            Receiver::XdpDrop => "native XDP_DROP (ceiling)",
            Receiver::XdpTx => "native XDP_TX reflector",
            Receiver::Synshield => "**synshield** (native XDP)",
        }
    }
}

/// What the SYNs look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SynShape {
    /// 20-byte TCP header, no options (hping3's default): 54-byte frames.
    Bare,
    /// The options a Linux client sends, in its order: MSS 1460, SACK permitted, timestamps,
    /// NOP, window scale 7 (net/ipv4/tcp_output.c, `tcp_options_write`): 74-byte frames.
    LinuxOptions,
}

impl SynShape {
    const ALL: [SynShape; 2] = [SynShape::Bare, SynShape::LinuxOptions];

    fn label(self) -> &'static str {
        match self {
            SynShape::Bare => "bare (54 B)",
            SynShape::LinuxOptions => "MSS, SACK, TS, WS (74 B)",
        }
    }

    fn options(self) -> &'static [u8] {
        match self {
            SynShape::Bare => &[],
            SynShape::LinuxOptions => &[
                2, 4, 0x05, 0xb4, // MSS 1460
                4, 2, // SACK permitted
                8, 10, 0, 1, 0, 0, 0, 0, 0, 0, // timestamps: TSval 65536, TSecr 0
                1, // NOP
                3, 3, 7, // window scale 7
            ],
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            SynShape::Bare => "syn-bare.cfg",
            SynShape::LinuxOptions => "syn-options.cfg",
        }
    }
}

/// One flood's rates, per second of the measured window.
#[derive(Clone, Copy, Debug)]
struct Measured {
    receiver: Receiver,
    shape: SynShape,
    /// What trafgen pushed into the veth.
    sent: f64,
    /// What reached shield0.
    reached: f64,
    /// What the client received back (every frame the shield sent and the client saw).
    delivered: f64,
    /// SYN-ACKs by the shield's own count; `None` where there is none (the two-instruction
    /// programs), or synshield printed fewer than two status lines in the window.
    shield_synacks: Option<f64>,
    /// Frames shield0 failed to send (XDP_TX refused by the peer, queue full).
    shield_tx_dropped: u64,
    /// How often trafgen had to be restarted in the window (see [`Trafgen`]).
    trafgen_restarts: u32,
}

impl Measured {
    /// The headline: SYN-ACKs answered per second for the kernel and synshield (see the module
    /// documentation), frames absorbed per second for XDP_DROP, frames sent back and delivered
    /// per second for XDP_TX.
    fn result(&self) -> Option<f64> {
        match self.receiver {
            Receiver::XdpDrop => Some(self.reached),
            Receiver::XdpTx => Some(self.delivered),
            Receiver::KernelCookies | Receiver::Synshield => {
                self.shield_synacks.map(|s| s.min(self.delivered))
            }
        }
    }
}

/// Floods every receiver in turn. A receiver that fails (synshield not loading, say) is
/// reported as such and the others are still measured; an interruption ends the section.
fn lab_section(synshield: &Path, timing: Timing) -> Result<Section> {
    let interrupts = Interrupts::install()?;
    let configs = TempDir::new()?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for receiver in Receiver::ALL {
        match flood_receiver(receiver, synshield, timing, &configs, &interrupts) {
            Ok(measured) => results.extend(measured),
            Err(e) => {
                interrupts.check()?;
                eprintln!("xtask bench: {} failed: {e:#}", receiver.label());
                failures.push((receiver, brief_error(&e)));
            }
        }
    }
    Ok(Section { text: lab_report(&results, &failures, timing), incomplete: !failures.is_empty() })
}

/// Builds a lab, sets `receiver` up on shield0 and floods it with each SYN shape.
fn flood_receiver(
    receiver: Receiver,
    synshield: &Path,
    timing: Timing,
    configs: &TempDir,
    interrupts: &Interrupts,
) -> Result<Vec<Measured>> {
    interrupts.check()?;
    // Declared first, dropped last: everything below runs in it and is stopped before it goes.
    let lab = Lab::with_options(&LabOptions::default()).context("building the lab")?;
    let _sink = lab
        .client
        .enter(|| attach_xdp_action(CLIENT_IF, XdpAction::Drop, XdpAttachMode::Native))?
        .context("attaching the XDP_DROP sink to client0")?;
    let client_mac = Lab::mac(&lab.client, CLIENT_IF)?;
    let shield_mac = Lab::mac(&lab.shield, SHIELD_IF)?;
    // The kernel sends its answers through the neighbour table and the client's sink drops ARP:
    // a permanent entry for the only address SYNs come from.
    lab.shield.run(
        "ip",
        &[
            "neigh",
            "replace",
            &CLIENT_V4.to_string(),
            "lladdr",
            &mac_text(client_mac),
            "dev",
            SHIELD_IF,
            "nud",
            "permanent",
        ],
    )?;

    let mut listener = None;
    let mut xdp_link = None;
    let mut shield_process = None;
    match receiver {
        Receiver::KernelCookies => {
            lab.shield.sysctl("net.ipv4.tcp_syncookies", "2")?;
            // Held open by this process; with tcp_syncookies=2 its backlog does not matter.
            listener = Some(
                lab.shield
                    .enter(|| TcpListener::bind(SocketAddrV4::new(SHIELD_V4, BENCH_PORT)))?
                    .context("listening in the shield namespace")?,
            );
        }
        Receiver::XdpDrop | Receiver::XdpTx => {
            let action =
                if receiver == Receiver::XdpDrop { XdpAction::Drop } else { XdpAction::Tx };
            xdp_link = Some(
                lab.shield
                    .enter(|| attach_xdp_action(SHIELD_IF, action, XdpAttachMode::Native))?
                    .with_context(|| format!("attaching {action:?} to shield0"))?,
            );
        }
        Receiver::Synshield => {
            let program = synshield.to_str().context("non-UTF-8 path to synshield")?;
            let mut cmd = lab.shield.command(program);
            // Not --quiet: the status lines carry the tx_synack counter.
            cmd.args(["serve", "--iface", SHIELD_IF, "--port", &BENCH_PORT.to_string()])
                .args(["--xdp-mode", "native"]);
            let mut process = Process::spawn(&mut cmd, "synshield")?;
            process.wait_for_line(|l| l.starts_with("synshield: attached"), START_DEADLINE)?;
            shield_process = Some(process);
        }
    }

    let mut results = Vec::new();
    for shape in SynShape::ALL {
        let config = configs.path().join(shape.file_name());
        fs::write(&config, trafgen_config(shape, shield_mac, client_mac, BENCH_PORT))
            .with_context(|| format!("writing {}", config.display()))?;
        println!("xtask bench: {} <- {} SYNs", receiver.label(), shape.label());
        let measured =
            flood(&lab, (receiver, shape), &config, timing, shield_process.as_mut(), interrupts)?;
        println!(
            "xtask bench:   sent {}, reached shield0 {}, answers at client0 {}, shield's SYN-ACKs {}",
            pps(measured.sent),
            pps(measured.reached),
            pps(measured.delivered),
            measured.shield_synacks.map_or_else(|| "-".into(), pps)
        );
        results.push(measured);
    }
    if let Some(mut process) = shield_process {
        let status = process.stop(libc::SIGTERM)?;
        let errors: Vec<String> = process.stderr.try_iter().map(|(_, l)| l).collect();
        ensure!(status.success(), "synshield exited with {status}; its errors: {errors:?}");
    }
    drop((listener, xdp_link));
    Ok(results)
}

/// One flood: trafgen bounded in packets and seconds, counters read around the window.
fn flood(
    lab: &Lab,
    (receiver, shape): (Receiver, SynShape),
    config: &Path,
    timing: Timing,
    synshield: Option<&mut Process>,
    interrupts: &Interrupts,
) -> Result<Measured> {
    let start = Instant::now();
    let end = start + timing.warmup + timing.window;
    let mut trafgen = Trafgen::start(lab, config, end)?;
    trafgen.keep_running(lab, config, start + timing.warmup, interrupts)?;
    let before = Snapshot::read(lab)?;
    let restarts_before = trafgen.restarts;
    trafgen.keep_running(lab, config, end, interrupts)?;
    let after = Snapshot::read(lab)?;
    trafgen.process.stop(libc::SIGINT)?;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "rates for people")]
    let rate = |n: u64| n as f64 / seconds;
    let shield_synacks = match (receiver, synshield) {
        (Receiver::KernelCookies, _) => Some(rate(after.syncookies_sent - before.syncookies_sent)),
        (Receiver::Synshield, Some(process)) => process.synack_rate(before.at, after.at),
        _ => None,
    };
    Ok(Measured {
        receiver,
        shape,
        sent: rate(
            (after.client.tx_packets + after.client.tx_dropped)
                - (before.client.tx_packets + before.client.tx_dropped),
        ),
        reached: rate(after.shield.rx_packets - before.shield.rx_packets),
        delivered: rate(after.client.rx_packets - before.client.rx_packets),
        shield_synacks,
        shield_tx_dropped: after.shield.tx_dropped - before.shield.tx_dropped,
        trafgen_restarts: trafgen.restarts - restarts_before,
    })
}

/// trafgen, kept running until a deadline.
///
/// trafgen 0.6.8 exits when its packet socket answers EAGAIN ("Flushing TX_RING failed:
/// Resource temporarily unavailable"): that happens when the skbs it has in flight in the veth
/// ring outgrow the socket's send buffer, that is when the receiver falls behind for a moment
/// (seen with XDP_TX receivers). The buffer comes from the global `net.core.wmem_default`,
/// which a benchmark has no business raising on the host, so instead a trafgen that exited
/// for that reason is started again at once (a few milliseconds without traffic, counted
/// and reported); any other exit is an error.
struct Trafgen {
    process: Process,
    /// The end of the flood: every trafgen started is bounded by it (plus `GRACE`).
    end: Instant,
    restarts: u32,
}

impl Trafgen {
    /// Most restarts in one flood before giving up.
    const MAX_RESTARTS: u32 = 1000;

    /// Starts trafgen, bounded in seconds (`timeout`, which also holds if xtask itself is
    /// killed) and in packets (`--num`), and waits until it sends.
    fn start(lab: &Lab, config: &Path, end: Instant) -> Result<Trafgen> {
        Ok(Trafgen { process: Self::spawn(lab, config, end)?, end, restarts: 0 })
    }

    fn spawn(lab: &Lab, config: &Path, end: Instant) -> Result<Process> {
        let bound = end.saturating_duration_since(Instant::now()) + GRACE;
        let budget = MAX_SENDER_PPS * bound.as_secs();
        let mut cmd = lab.client.command("timeout");
        // One CPU (trafgen pins itself to CPU 0); no tuning of socket memory or IRQs.
        cmd.args(["--signal=INT", "--kill-after=2", &format!("{}s", bound.as_secs()), "trafgen"])
            .args(["--dev", CLIENT_IF, "--conf"])
            .arg(config)
            .args(["--cpus", "1", "--num", &budget.to_string(), "--no-sock-mem", "--notouch-irq"]);
        let mut process = Process::spawn(&mut cmd, "trafgen")?;
        process.wait_for_line(|l| l.contains("Running!"), START_DEADLINE)?;
        Ok(process)
    }

    /// Waits until `until`, restarting trafgen when it exits on EAGAIN.
    fn keep_running(
        &mut self,
        lab: &Lab,
        config: &Path,
        until: Instant,
        interrupts: &Interrupts,
    ) -> Result<()> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let pidfd = self.process.pidfd()?;
            if !interrupts.wait(Some(&pidfd), left)? {
                return Ok(());
            }
            let status = self.process.stop(libc::SIGINT)?;
            let output = self.process.output_summary();
            ensure!(
                output.contains("Resource temporarily unavailable")
                    && self.restarts < Self::MAX_RESTARTS,
                "trafgen stopped before the measured window ended ({status}, after {} \
                 restarts): {output}",
                self.restarts
            );
            self.restarts += 1;
            self.process = Self::spawn(lab, config, self.end)?;
        }
    }
}

/// A trafgen packet configuration (trafgen(8), "SYNTAX"): one Ethernet/IPv4/TCP SYN from the
/// client's address to `port` on the shield, with a random source port per packet and both
/// checksums computed by trafgen after the randomisation.
///
/// The source address stays the client's: the kernel receiver answers through its neighbour
/// table, and a source address per packet would cost it a neighbour lookup miss per SYN (and
/// the ARP requests that go with it) that XDP_TX never pays, which would measure the wrong
/// thing. 65536 source ports already make every cookie different.
fn trafgen_config(shape: SynShape, dst_mac: [u8; 6], src_mac: [u8; 6], port: u16) -> String {
    let options = shape.options();
    let tcp_len = 20 + options.len();
    let ip_len = 20 + tcp_len;
    let data_offset = tcp_len / 4;
    let bytes = |b: &[u8]| b.iter().map(|b| format!("0x{b:02x}")).collect::<Vec<_>>().join(", ");
    let dotted = |a: std::net::Ipv4Addr| a.octets().map(|o| o.to_string()).join(", ");
    let mut s = format!(
        "/* Generated by `cargo xtask bench`: a SYN, {shape}. */\n\
         {{\n\
         \x20 /* Ethernet: to shield0, from client0, IPv4 */\n\
         \x20 {dst}, {src}, c16(0x0800),\n\
         \x20 /* IPv4: no options, DF, TTL 64, TCP; header checksum over bytes 14..33 */\n\
         \x20 0x45, 0x00, c16({ip_len}), c16(0), 0x40, 0x00, 64, 6, csumip(14, 33),\n\
         \x20 {saddr}, {daddr},\n\
         \x20 /* TCP: random source port, SYN, window 64240; checksum with the pseudo-header */\n\
         \x20 drnd(2), c16({port}), c32(1), c32(0), c16(({data_offset} << 12) | 0x02), c16(64240),\n\
         \x20 csumtcp(14, 34), c16(0),\n",
        shape = shape.label(),
        dst = bytes(&dst_mac),
        src = bytes(&src_mac),
        saddr = dotted(CLIENT_V4),
        daddr = dotted(SHIELD_V4),
    );
    if !options.is_empty() {
        let _ = writeln!(s, "  /* TCP options */\n  {},", bytes(options));
    }
    s.push_str("}\n");
    s
}

fn lab_report(results: &[Measured], failures: &[(Receiver, String)], timing: Timing) -> String {
    let mut s = String::from("## SYN flood in the lab (veth, trafgen on one CPU)\n\n");
    let _ = write!(
        s,
        "A client and a shield network namespace joined by a veth pair. `trafgen` sends IPv4 \
         SYNs to port {BENCH_PORT} from the client's address with a random source port per \
         packet, pinned to one CPU (`--cpus 1`), bounded by `timeout` and `--num`; \
         {warmup:.1} s of warm-up, then a {window:.0}-second measured window per row. client0 \
         runs a native XDP_DROP program that counts and drops the answers (so the client kernel \
         spends nothing on them; an XDP program on the peer is also what native XDP_TX on a \
         veth needs to deliver). Counters: veth statistics of both ends, the shield's \
         `TcpExtSyncookiesSent`, synshield's `tx_synack`; how each is read is documented in \
         `xtask/src/bench.rs`.\n\n\
         **SYN-ACK/s** is the smaller of the answers the client received and the SYN-ACKs the \
         shield counted; for XDP_DROP the result is frames absorbed per second, for the XDP_TX \
         reflector (every frame sent back unchanged: the ceiling of any XDP_TX answer) frames \
         returned to the client per second.\n\n\
         On a veth the receiving end's work (NAPI, or the backlog without XDP) runs as a \
         softirq on the *sending* CPU (on this kernel NET_RX softirqs count up on CPU 0 only, \
         trafgen's CPU), so sender and receiver share one CPU: a costlier receiver shows as a \
         lower *sent* rate, not as a gap between *sent* and *reached shield0* (which appears \
         only when the veth ring overflows). The rates are therefore the cost of one SYN on \
         one CPU, generation included; the XDP_TX reflector row shows what the answer's way \
         back alone costs, which the XDP_DROP ceiling does not pay.\n\n",
        warmup = timing.warmup.as_secs_f64(),
        window = timing.window.as_secs_f64(),
    );
    s.push_str(
        "| receiver on shield0 | SYNs | sent (pps) | reached shield0 (pps) | answers at \
         client0 (pps) | shield's SYN-ACK count (/s) | result |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for m in results {
        let result = match (m.receiver, m.result()) {
            (_, None) => "n/a".to_owned(),
            (Receiver::XdpDrop, Some(r)) => format!("**{}** absorbed", pps(r)),
            (Receiver::XdpTx, Some(r)) => format!("**{}** sent back", pps(r)),
            (_, Some(r)) => format!("**{}** SYN-ACK/s", pps(r)),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {result} |",
            m.receiver.label(),
            m.shape.label(),
            pps(m.sent),
            pps(m.reached),
            pps(m.delivered),
            m.shield_synacks.map_or_else(|| "-".into(), pps),
        );
    }
    s.push('\n');
    s.push_str(&lab_notes(results, failures));
    s.push_str(&lab_ratios(results));
    s.push_str(NUMBERS_TO_BEAT);
    s
}

/// Lines under the table: receivers that failed, frames the shield could not send, answers
/// that were not SYN-ACKs, trafgen restarts.
fn lab_notes(results: &[Measured], failures: &[(Receiver, String)]) -> String {
    let mut s = String::new();
    for (receiver, error) in failures {
        let _ = writeln!(s, "- {}: **failed**: {error}", receiver.label());
    }
    for m in results.iter().filter(|m| m.shield_tx_dropped > 0) {
        let _ = writeln!(
            s,
            "- {} with {} SYNs: shield0 failed to send {} frames (XDP_TX refused or queue \
             full).",
            m.receiver.label(),
            m.shape.label(),
            m.shield_tx_dropped
        );
    }
    for m in results.iter().filter(|m| m.receiver != Receiver::XdpDrop) {
        if let Some(synacks) = m.shield_synacks
            && synacks < 0.9 * m.delivered
        {
            let _ = writeln!(
                s,
                "- {} with {} SYNs: fewer SYN-ACKs counted than answers received: the others \
                 are not SYN-ACKs (RSTs from a shield kernel without a listener, e.g. when the \
                 XDP program passes SYNs on).",
                m.receiver.label(),
                m.shape.label()
            );
        }
    }
    for m in results.iter().filter(|m| m.trafgen_restarts > 0) {
        let _ = writeln!(
            s,
            "- {} with {} SYNs: trafgen restarts in the window: {} (it exits on EAGAIN when \
             the receiver falls behind; see `Trafgen` in xtask/src/bench.rs).",
            m.receiver.label(),
            m.shape.label(),
            m.trafgen_restarts
        );
    }
    s
}

/// The ratios of synshield's rate to the references'.
fn lab_ratios(results: &[Measured]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "\n### Ratios\n\n\
         | SYNs | synshield / XDP_DROP (goal >= 0.9) | synshield / kernel SYN cookies | \
         synshield / XDP_TX reflector |\n\
         |---|---:|---:|---:|\n"
    );
    let find = |r: Receiver, shape: SynShape| {
        results.iter().find(|m| m.receiver == r && m.shape == shape).and_then(Measured::result)
    };
    for shape in SynShape::ALL {
        let ratio = |other: Receiver| match (find(Receiver::Synshield, shape), find(other, shape)) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}", ours / theirs),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            shape.label(),
            ratio(Receiver::XdpDrop),
            ratio(Receiver::KernelCookies),
            ratio(Receiver::XdpTx)
        );
    }
    s
}

/// From the project brief, measured on this box kind (veth between namespaces, one trafgen
/// CPU sending SYNs).
const NUMBERS_TO_BEAT: &str = "\n### Numbers to beat (this box kind: veth between namespaces, one trafgen CPU)\n\n\
         | receiver | rate |\n|---|---:|\n\
         | kernel SYN cookies (`net.ipv4.tcp_syncookies=2`) | 128-151 k SYN-ACK/s |\n\
         | native XDP_DROP (the ceiling here) | 340-375 k pps |\n\
         | synshield, goal | >= 0.9 x XDP_DROP |\n\n\
         hping3 tops out near 100-150 k pps per sender; trafgen is the fast generator.\n\n";

/// `123456.7` as `123.5 k`.
fn pps(rate: f64) -> String {
    format!("{:.1} k", rate / 1000.0)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

// ---------------------------------------------------------------------------------------------
// Counters.

/// Packet counters of one interface (`/proc/net/dev`).
#[derive(Clone, Copy, Debug, Default)]
struct DevCounters {
    rx_packets: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

/// The counters of both lab ends and the shield's TCP statistics at one moment.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    client: DevCounters,
    shield: DevCounters,
    syncookies_sent: u64,
}

impl Snapshot {
    fn read(lab: &Lab) -> Result<Snapshot> {
        let at = Instant::now();
        let client = dev_counters(&read_net_file(&lab.client, "dev")?, CLIENT_IF)?;
        let shield = dev_counters(&read_net_file(&lab.shield, "dev")?, SHIELD_IF)?;
        let syncookies_sent = tcp_ext(&read_net_file(&lab.shield, "netstat")?, "SyncookiesSent")?;
        Ok(Snapshot { at, client, shield, syncookies_sent })
    }
}

/// Reads `/proc/thread-self/net/<file>` from a thread inside `ns`: the namespace's view, without
/// starting a process (sysfs would show the namespace of whoever mounted it).
fn read_net_file(ns: &Netns, file: &str) -> Result<String> {
    let path = format!("/proc/thread-self/net/{file}");
    ns.enter(|| fs::read_to_string(&path))?
        .with_context(|| format!("reading {path} in {}", ns.name()))
}

/// One interface's line of `/proc/net/dev`: `name: rx bytes packets errs drop fifo frame
/// compressed multicast, tx bytes packets errs drop ...`.
fn dev_counters(text: &str, ifname: &str) -> Result<DevCounters> {
    let line = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim() == ifname)
        .map(|(_, rest)| rest)
        .with_context(|| format!("no {ifname} in /proc/net/dev"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad /proc/net/dev line for {ifname}: {line}"))?;
    ensure!(fields.len() >= 12, "short /proc/net/dev line for {ifname}: {line}");
    Ok(DevCounters { rx_packets: fields[1], tx_packets: fields[9], tx_dropped: fields[11] })
}

/// A `TcpExt` counter from `/proc/net/netstat` (a line of names, then a line of values).
fn tcp_ext(text: &str, name: &str) -> Result<u64> {
    let mut rows = text.lines().filter_map(|l| l.strip_prefix("TcpExt:"));
    let (names, values) = rows.next().zip(rows.next()).context("no TcpExt in netstat")?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .with_context(|| format!("no TcpExt {name} in netstat"))?
        .1
        .parse()
        .with_context(|| format!("bad TcpExt {name}"))
}

/// The cumulative `tx_synack` of a synshield status line (`status: rx N (R/s) | tx_synack N
/// (R/s) | ...`); counters that are zero are left out of the line.
fn status_tx_synack(line: &str) -> Option<u64> {
    let fields = line.strip_prefix("status: ")?;
    Some(
        fields
            .split(" | ")
            .find_map(|f| f.strip_prefix("tx_synack "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

// ---------------------------------------------------------------------------------------------
// Processes, interruption, temporary files.

/// A line of output and when it was read.
type Line = (Instant, String);

/// A child process in its own process group (so a Ctrl-C on the terminal reaches xtask, which
/// cleans up, and not the child directly), stopped by its PID when dropped.
struct Process {
    child: Child,
    what: &'static str,
    stdout: mpsc::Receiver<Line>,
    stderr: mpsc::Receiver<Line>,
    /// Lines already taken from `stdout` (status lines, error messages).
    seen: Vec<Line>,
}

impl Process {
    fn spawn(cmd: &mut Command, what: &'static str) -> Result<Process> {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        let stdout = lines(child.stdout.take().context("stdout is piped")?);
        let stderr = lines(child.stderr.take().context("stderr is piped")?);
        Ok(Process { child, what, stdout, stderr, seen: Vec::new() })
    }

    /// Waits until a line of standard output satisfies `pred`.
    fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = pred(&line.1);
                    self.seen.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("not within {limit:?}"),
                        RecvTimeoutError::Disconnected => "it exited".to_owned(),
                    };
                    let output = self.output_summary();
                    bail!("{} did not start ({why}): {output}", self.what);
                }
            }
        }
    }

    /// What the process wrote, for an error message: its standard output, and the beginning
    /// and the end of its standard error (a verifier log runs to thousands of lines).
    fn output_summary(&mut self) -> String {
        const HEAD: usize = 2;
        const TAIL: usize = 8;
        self.seen.extend(self.stdout.try_iter());
        // Standard error closes when the process exits; wait a moment for the last lines.
        let mut err = Vec::new();
        while let Ok((_, l)) = self.stderr.recv_timeout(Duration::from_secs(1)) {
            err.push(l);
        }
        if err.len() > HEAD + TAIL {
            let skipped = format!("[... {} lines ...]", err.len() - HEAD - TAIL);
            err.splice(HEAD..err.len() - TAIL, [skipped]);
        }
        let out: Vec<&str> = self.seen.iter().map(|(_, l)| l.trim()).collect();
        format!("output {out:?}; errors {err:?}")
    }

    /// SYN-ACKs per second between two moments, from the first and the last status line read
    /// between them; `None` with fewer than two such lines.
    fn synack_rate(&mut self, from: Instant, to: Instant) -> Option<f64> {
        self.seen.extend(self.stdout.try_iter());
        let mut inside = self
            .seen
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .filter_map(|(at, l)| Some((*at, status_tx_synack(l)?)));
        let first = inside.next()?;
        let last = inside.next_back()?;
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
        let rate = last.1.saturating_sub(first.1) as f64 / seconds;
        (seconds > 0.0).then_some(rate)
    }

    /// A pidfd for the process: readable once it has exited.
    fn pidfd(&self) -> Result<OwnedFd> {
        pidfd_open(self.child.id()).with_context(|| format!("pidfd_open for {}", self.what))
    }

    /// Sends `signal` to the process (by PID), waits up to `GRACE` for it to exit, then kills
    /// its process group (it and what it started) and reaps it.
    fn stop(&mut self, signal: libc::c_int) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("PID out of range")?;
        // SAFETY: signalling a child we started and have not reaped (try_wait saw it running).
        unsafe { libc::kill(pid, signal) };
        if let Some(status) = wait_timeout(&mut self.child, GRACE)? {
            return Ok(status);
        }
        eprintln!("xtask bench: {} did not exit within {GRACE:?}: killing it", self.what);
        // SAFETY: the group the child leads (process_group(0) or its own setpgid), not reaped.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.stop(libc::SIGTERM);
    }
}

/// Lines of a pipe with the time each was read, read on a thread, as a channel.
fn lines<R: io::Read + Send + 'static>(r: R) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, at most `limit`: `poll` on a pidfd, an event rather than a loop
/// of sleeps.
fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let fd = pidfd_open(child.id())?;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd. EINTR (a signal for xtask) just ends the wait early.
    unsafe { libc::poll(&raw mut pfd, 1, poll_ms(limit)) };
    Ok(child.try_wait()?)
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A poll(2) timeout in milliseconds, rounded up so that a wait never ends early.
fn poll_ms(d: Duration) -> libc::c_int {
    libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}

/// A signal asked xtask to stop; the lab is removed on the way out.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal: the lab and its processes were removed")
    }
}

impl std::error::Error for Interrupted {}

/// The write end of the self-pipe that the signal handler writes to; -1 when not installed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) on a pipe is async-signal-safe; a full pipe just means "already told".
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// SIGINT, SIGTERM and SIGHUP while the lab exists, turned into an error at the next wait (a
/// self-pipe), so that the processes and namespaces are removed by their destructors rather
/// than left behind. The previous handlers come back when this is dropped.
struct Interrupts {
    read: OwnedFd,
    _write: OwnedFd,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Interrupts {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    fn install() -> Result<Interrupts> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error()).context("creating the signal pipe");
        }
        // SAFETY: both fds are new and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        let mut interrupts = Interrupts { read, _write: write, previous: Vec::new() };
        for signal in Self::SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler only calls write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&raw mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &raw const action, &raw mut previous) != 0 {
                    return Err(io::Error::last_os_error()).context("installing a signal handler");
                }
                interrupts.previous.push((signal, previous));
            }
        }
        Ok(interrupts)
    }

    /// Waits `limit`, or until `also` is readable (true), or fails as soon as a signal
    /// arrives (or if one arrived before).
    fn wait(&self, also: Option<&OwnedFd>, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [self.read.as_raw_fd(), also.map_or(-1, AsRawFd::as_raw_fd)]
                .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            // SAFETY: two pollfds (a negative fd is ignored by poll).
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, poll_ms(left)) } > 0 {
                if fds[0].revents != 0 {
                    return Err(Interrupted.into());
                }
                if fds[1].revents != 0 {
                    return Ok(true);
                }
            }
            // Timed out, or EINTR: done if the time is up, else wait for the rest.
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Fails if a signal has arrived.
    fn check(&self) -> Result<()> {
        self.wait(None, Duration::ZERO).map(drop)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: restoring the action sigaction gave us.
            unsafe { libc::sigaction(*signal, previous, std::ptr::null_mut()) };
        }
        WAKE_FD.store(-1, Ordering::Relaxed);
    }
}

/// A directory for the trafgen configurations, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("synshield-bench-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame \
                    compressed multicast|bytes packets errs drop fifo colls carrier compressed\n\
                    \x20   lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
                    client0: 5400558 100007 0 0 0 0 0 0 5400558 100009 0 3 0 0 0 0\n";
        let c = dev_counters(text, "client0").unwrap();
        assert_eq!((c.rx_packets, c.tx_packets, c.tx_dropped), (100_007, 100_009, 3));
        assert!(dev_counters(text, "shield0").is_err());
    }

    #[test]
    fn reads_tcp_ext() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 42 7\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(text, "SyncookiesSent").unwrap(), 42);
        assert_eq!(tcp_ext(text, "SyncookiesRecv").unwrap(), 7);
        assert!(tcp_ext(text, "Nope").is_err());
    }

    #[test]
    fn reads_tx_synack_from_status_lines() {
        let line = "status: rx 30 (10/s) | pass_not_ip 20 (5/s) | tx_synack 10 (5/s)";
        assert_eq!(status_tx_synack(line), Some(10));
        assert_eq!(status_tx_synack("status: rx 3 (1/s) | pass_not_ip 3 (1/s)"), Some(0));
        assert_eq!(status_tx_synack("synshield: attached to shield0"), None);
    }

    #[test]
    fn trafgen_config_lengths_match_the_shape() {
        let c = trafgen_config(SynShape::LinuxOptions, [2; 6], [4; 6], 80);
        assert!(c.contains("c16(60)"), "{c}");
        assert!(c.contains("c16((10 << 12) | 0x02)"), "{c}");
        assert!(c.contains("0x02, 0x04, 0x05, 0xb4"), "{c}");
        let c = trafgen_config(SynShape::Bare, [2; 6], [4; 6], 80);
        assert!(c.contains("c16(40)") && c.contains("c16((5 << 12) | 0x02)"), "{c}");
        assert!(!c.contains("TCP options"), "{c}");
    }
}
