//! The SYN flood in the lab.

use super::*;

/// What answers the SYNs on shield0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Receiver {
    /// No XDP; a listening socket and `net.ipv4.tcp_syncookies=2` (a cookie for every SYN).
    KernelCookies,
    /// A native `r0 = XDP_DROP; exit`: the ceiling of a receiver on this link.
    XdpDrop,
    /// A native `r0 = XDP_TX; exit`, every frame sent back unchanged: the ceiling of any
    /// XDP_TX answer on this link, and a check that XDP_TX frames are counted as delivered.
    XdpTx,
    /// `synshield serve --xdp-mode native --mode cookies`: every SYN answered with a cookie.
    SynshieldCookies,
    /// `synshield serve --xdp-mode native --mode adaptive` (the default): under this flood
    /// the receiving CPU passes its share of `--syn-threshold` in the first 16 ms window and
    /// answers with cookies from then on; each SYN also costs the per-CPU SYN count.
    SynshieldAdaptive,
}

impl Receiver {
    pub(super) const ALL: [Receiver; 5] = [
        Receiver::KernelCookies,
        Receiver::XdpDrop,
        Receiver::XdpTx,
        Receiver::SynshieldCookies,
        Receiver::SynshieldAdaptive,
    ];

    /// The two synshield modes, in the order of the ratio and goal tables.
    pub(super) const SYNSHIELD: [Receiver; 2] =
        [Receiver::SynshieldCookies, Receiver::SynshieldAdaptive];

    pub(super) fn label(self) -> &'static str {
        match self {
            Receiver::KernelCookies => "kernel SYN cookies (`tcp_syncookies=2`, listener)",
            Receiver::XdpDrop => "native XDP_DROP (ceiling)",
            Receiver::XdpTx => "native XDP_TX reflector",
            Receiver::SynshieldCookies => "**synshield** `--mode cookies` (native XDP)",
            Receiver::SynshieldAdaptive => "**synshield** `--mode adaptive` (native XDP)",
        }
    }

    /// synshield's `--mode`, for the synshield receivers.
    pub(super) fn synshield_mode(self) -> Option<&'static str> {
        match self {
            Receiver::SynshieldCookies => Some("cookies"),
            Receiver::SynshieldAdaptive => Some("adaptive"),
            Receiver::KernelCookies | Receiver::XdpDrop | Receiver::XdpTx => None,
        }
    }
}

/// What the SYNs look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SynShape {
    /// 20-byte TCP header, no options (hping3's default): 54-byte frames.
    Bare,
    /// The options a Linux client sends, in its order: MSS 1460, SACK permitted, timestamps,
    /// NOP, window scale 7 (net/ipv4/tcp_output.c, `tcp_options_write`): 74-byte frames.
    LinuxOptions,
}

impl SynShape {
    pub(super) const ALL: [SynShape; 2] = [SynShape::Bare, SynShape::LinuxOptions];

    pub(super) fn label(self) -> &'static str {
        match self {
            SynShape::Bare => "bare (54 B)",
            SynShape::LinuxOptions => "MSS, SACK, TS, WS (74 B)",
        }
    }

    pub(super) fn options(self) -> &'static [u8] {
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

    pub(super) fn file_name(self) -> &'static str {
        match self {
            SynShape::Bare => "syn-bare.cfg",
            SynShape::LinuxOptions => "syn-options.cfg",
        }
    }
}

/// One flood's rates, per second of the measured window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Measured {
    pub(super) receiver: Receiver,
    pub(super) shape: SynShape,
    /// What trafgen pushed into the veth.
    pub(super) sent: f64,
    /// What reached shield0.
    pub(super) reached: f64,
    /// What the client received back (every frame the shield sent and the client saw).
    pub(super) delivered: f64,
    /// SYN-ACKs by the shield's own count; `None` where there is none (the two-instruction
    /// programs), or synshield printed fewer than two status lines in the window.
    pub(super) shield_synacks: Option<f64>,
    /// Frames shield0 failed to send (XDP_TX refused by the peer, queue full).
    pub(super) shield_tx_dropped: u64,
    /// How often trafgen had to be restarted in the window (see [`Trafgen`]).
    pub(super) trafgen_restarts: u32,
    /// synshield `--mode adaptive`: the share of its status lines in the window that say it
    /// answered with cookies (`mode adaptive:cookies`); `None` for the other receivers.
    pub(super) on_cookies: Option<f64>,
}

impl Measured {
    /// The headline: SYN-ACKs answered per second for the kernel and synshield (see the module
    /// documentation), frames absorbed per second for XDP_DROP, frames sent back and delivered
    /// per second for XDP_TX.
    pub(super) fn result(&self) -> Option<f64> {
        match self.receiver {
            Receiver::XdpDrop => Some(self.reached),
            Receiver::XdpTx => Some(self.delivered),
            Receiver::KernelCookies | Receiver::SynshieldCookies | Receiver::SynshieldAdaptive => {
                self.shield_synacks.map(|s| s.min(self.delivered))
            }
        }
    }
}

/// Floods every receiver in turn. A receiver that fails (synshield not loading, say) is
/// reported as such and the others are still measured; an interruption ends the section.
pub(super) fn lab_section(synshield: &Path, timing: Timing) -> Result<Section> {
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
    let mut text = lab_report(&results, &failures, timing);
    if !results.is_empty() {
        text.push_str(&lab_plot(&results)?);
    }
    Ok(Section { text, incomplete: !failures.is_empty() })
}

/// Builds a lab, sets `receiver` up on shield0 and floods it with each SYN shape.
pub(super) fn flood_receiver(
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
        Receiver::SynshieldCookies | Receiver::SynshieldAdaptive => {
            let program = synshield.to_str().context("non-UTF-8 path to synshield")?;
            let mode = receiver.synshield_mode().context("a synshield receiver has a mode")?;
            let mut cmd = lab.shield.command(program);
            // Not --quiet: the status lines carry the tx_synack counter and the mode.
            cmd.args(["serve", "--iface", SHIELD_IF, "--port", &BENCH_PORT.to_string()]).args([
                "--xdp-mode",
                "native",
                "--mode",
                mode,
                "--grace",
                SYNSHIELD_GRACE,
            ]);
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
pub(super) fn flood(
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
    let (shield_synacks, on_cookies) = match (receiver, synshield) {
        (Receiver::KernelCookies, _) => {
            (Some(rate(after.syncookies_sent - before.syncookies_sent)), None)
        }
        (Receiver::SynshieldCookies, Some(process)) => {
            (process.synack_rate(before.at, after.at), None)
        }
        (Receiver::SynshieldAdaptive, Some(process)) => (
            process.synack_rate(before.at, after.at),
            process.share_of_status_lines(before.at, after.at, "mode adaptive:cookies "),
        ),
        _ => (None, None),
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
        on_cookies,
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
pub(super) struct Trafgen {
    pub(super) process: Process,
    /// The end of the flood: every trafgen started is bounded by it (plus `GRACE`).
    pub(super) end: Instant,
    pub(super) restarts: u32,
}

impl Trafgen {
    /// Most restarts in one flood before giving up.
    pub(super) const MAX_RESTARTS: u32 = 1000;

    /// Starts trafgen, bounded in seconds (`timeout`, which also holds if xtask itself is
    /// killed) and in packets (`--num`), and waits until it sends.
    pub(super) fn start(lab: &Lab, config: &Path, end: Instant) -> Result<Trafgen> {
        Ok(Trafgen { process: Self::spawn(lab, config, end)?, end, restarts: 0 })
    }

    pub(super) fn spawn(lab: &Lab, config: &Path, end: Instant) -> Result<Process> {
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
    pub(super) fn keep_running(
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
pub(super) fn trafgen_config(
    shape: SynShape,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    port: u16,
) -> String {
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

pub(super) fn lab_report(
    results: &[Measured],
    failures: &[(Receiver, String)],
    timing: Timing,
) -> String {
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
         `xtask/src/bench/mod.rs`.\n\n\
         synshield runs twice, with `--mode` given: `cookies` (a cookie for every SYN) and \
         `adaptive` (the default: SYNs answered with state below `--syn-threshold`, cookies \
         above). Under this flood adaptive mode switches to cookies within its first 16 ms \
         window, so its row is what a flood costs it: a cookie SYN-ACK plus the per-CPU count \
         of SYNs that decides the switch.\n\n\
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
    s.push_str(&numbers_to_beat(results));
    s
}

/// The chart of the table's results, saved next to BENCHMARKS.md; the Markdown that shows it.
pub(super) fn lab_plot(results: &[Measured]) -> Result<String> {
    let receivers: Vec<Receiver> =
        Receiver::ALL.into_iter().filter(|r| results.iter().any(|m| m.receiver == *r)).collect();
    let names: Vec<String> =
        receivers.iter().map(|r| r.label().replace("**", "").replace('`', "")).collect();
    let series: Vec<plot::Series> = SynShape::ALL
        .iter()
        .map(|shape| plot::Series {
            name: shape.label(),
            values: receivers
                .iter()
                .map(|r| {
                    results
                        .iter()
                        .find(|m| m.receiver == *r && m.shape == *shape)
                        .and_then(Measured::result)
                })
                .collect(),
        })
        .collect();
    let svg = plot::bar_chart(
        "SYN flood in the lab: the result column",
        "frames per second (SYN-ACKs, absorbed or sent back)",
        &names,
        &series,
    )?;
    plot::save("syn-flood", "SYN flood results per receiver and SYN shape", &svg)
}

/// Lines under the table: receivers that failed, frames the shield could not send, answers
/// that were not SYN-ACKs, trafgen restarts.
pub(super) fn lab_notes(results: &[Measured], failures: &[(Receiver, String)]) -> String {
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
    for m in results {
        if let Some(share) = m.on_cookies
            && share < 1.0
        {
            let _ = writeln!(
                s,
                "- {} with {} SYNs: only {:.0} % of its status lines in the window say \
                 `adaptive:cookies`: part of the flood was answered with state.",
                m.receiver.label(),
                m.shape.label(),
                100.0 * share
            );
        }
    }
    for m in results.iter().filter(|m| m.trafgen_restarts > 0) {
        let _ = writeln!(
            s,
            "- {} with {} SYNs: trafgen restarts in the window: {} (it exits on EAGAIN when \
             the receiver falls behind; see `Trafgen` in xtask/src/bench/flood.rs).",
            m.receiver.label(),
            m.shape.label(),
            m.trafgen_restarts
        );
    }
    s
}

/// The ratios of each synshield mode's rate to the references', and of adaptive mode's to
/// cookie mode's (what counting SYNs per CPU costs under a flood).
pub(super) fn lab_ratios(results: &[Measured]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "\n### Ratios\n\n\
         | SYNs | synshield | / XDP_DROP (goal >= 0.9) | / kernel SYN cookies | \
         / XDP_TX reflector | / synshield `--mode cookies` |\n\
         |---|---|---:|---:|---:|---:|\n"
    );
    let find = |r: Receiver, shape: SynShape| {
        results.iter().find(|m| m.receiver == r && m.shape == shape).and_then(Measured::result)
    };
    for shape in SynShape::ALL {
        for ours in Receiver::SYNSHIELD {
            let ratio = |other: Receiver| match (find(ours, shape), find(other, shape)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                s,
                "| {} | `--mode {}` | {} | {} | {} | {} |",
                shape.label(),
                ours.synshield_mode().unwrap_or_default(),
                ratio(Receiver::XdpDrop),
                ratio(Receiver::KernelCookies),
                ratio(Receiver::XdpTx),
                if ours == Receiver::SynshieldCookies {
                    "-".into()
                } else {
                    ratio(Receiver::SynshieldCookies)
                },
            );
        }
    }
    s
}

/// The references synshield is held to, from this run's own rows (never from an earlier run),
/// and each synshield mode against them.
pub(super) fn numbers_to_beat(results: &[Measured]) -> String {
    let find = |r: Receiver, shape: SynShape| {
        results.iter().find(|m| m.receiver == r && m.shape == shape).and_then(Measured::result)
    };
    let mut s = String::from(
        "\n### Numbers to beat (from this run)\n\n\
         | SYNs | kernel SYN cookies | XDP_DROP ceiling | synshield goal (>= 0.9 x XDP_DROP) | \
         synshield `--mode cookies` | goal | synshield `--mode adaptive` | goal |\n\
         |---|---:|---:|---:|---:|---|---:|---|\n",
    );
    let shown = |v: Option<f64>| v.map_or_else(|| "n/a".into(), pps);
    for shape in SynShape::ALL {
        let drop = find(Receiver::XdpDrop, shape);
        let goal = drop.map(|d| 0.9 * d);
        let _ = write!(
            s,
            "| {} | {} | {} | {} |",
            shape.label(),
            shown(find(Receiver::KernelCookies, shape)),
            shown(drop),
            shown(goal),
        );
        for receiver in Receiver::SYNSHIELD {
            let ours = find(receiver, shape);
            let met = match (ours, goal) {
                (Some(o), Some(g)) if o >= g => "met",
                (Some(_), Some(_)) => "**not met**",
                _ => "n/a",
            };
            let _ = write!(s, " {} | {met} |", shown(ours));
        }
        s.push('\n');
    }
    s.push_str("\ntrafgen is the fast generator here; hping3, the load test's, sends 100-150 k pps per process.\n\n");
    s
}

/// `123456.7` as `123.5 k`.
pub(super) fn pps(rate: f64) -> String {
    format!("{:.1} k", rate / 1000.0)
}

pub(super) fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn row(receiver: Receiver, shape: SynShape, rate: f64) -> Measured {
        Measured {
            receiver,
            shape,
            sent: rate,
            reached: rate,
            delivered: rate,
            shield_synacks: Some(rate),
            shield_tx_dropped: 0,
            trafgen_restarts: 0,
            on_cookies: (receiver == Receiver::SynshieldAdaptive).then_some(1.0),
        }
    }

    #[test]
    fn numbers_to_beat_come_from_the_rows_of_the_same_run() {
        let results = [
            row(Receiver::KernelCookies, SynShape::Bare, 250_000.0),
            row(Receiver::XdpDrop, SynShape::Bare, 600_000.0),
            row(Receiver::XdpTx, SynShape::Bare, 500_000.0),
            row(Receiver::SynshieldCookies, SynShape::Bare, 550_000.0),
            row(Receiver::SynshieldAdaptive, SynShape::Bare, 520_000.0),
            row(Receiver::SynshieldCookies, SynShape::LinuxOptions, 500_000.0),
        ];
        let s = numbers_to_beat(&results);
        assert!(
            s.contains(
                "| bare (54 B) | 250.0 k | 600.0 k | 540.0 k | 550.0 k | met | 520.0 k | **not met** |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| MSS, SACK, TS, WS (74 B) | n/a | n/a | n/a | 500.0 k | n/a | n/a | n/a |"
            ),
            "{s}"
        );
        let slow = [
            row(Receiver::XdpDrop, SynShape::Bare, 600_000.0),
            row(Receiver::SynshieldCookies, SynShape::Bare, 500_000.0),
        ];
        assert!(numbers_to_beat(&slow).contains("| 500.0 k | **not met** | n/a | n/a |"));

        // The ratios hold both modes against the same references, and adaptive against cookies.
        let r = lab_ratios(&results);
        assert!(r.contains("| bare (54 B) | `--mode cookies` | 0.92 | 2.20 | 1.10 | - |"), "{r}");
        assert!(
            r.contains("| bare (54 B) | `--mode adaptive` | 0.87 | 2.08 | 1.04 | 0.95 |"),
            "{r}"
        );
        assert!(
            r.contains("| MSS, SACK, TS, WS (74 B) | `--mode adaptive` | n/a | n/a | n/a | n/a |"),
            "{r}"
        );
    }

    #[test]
    fn an_adaptive_flood_answered_partly_with_state_is_noted() {
        let mut m = row(Receiver::SynshieldAdaptive, SynShape::Bare, 500_000.0);
        assert!(!lab_notes(&[m], &[]).contains("adaptive:cookies"));
        m.on_cookies = Some(0.5);
        let notes = lab_notes(&[m], &[]);
        assert!(notes.contains("only 50 % of its status lines"), "{notes}");
    }
}
