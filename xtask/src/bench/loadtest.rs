//! The user's own load test: a hping3 `--flood --rand-source` SYN flood at the shield while
//! real Linux clients connect and exchange data, against four defenses in the same run: the
//! kernel with `tcp_syncookies=1` (cookies once the SYN queue overflows) and `=2` (a cookie for
//! every SYN), nftables synproxy in front of the kernel, and synshield.
//!
//! ```text
//!  client netns                                        shield netns (default route via client)
//!  hping3 --flood --rand-source ─► client0 ═══ veth ═══ shield0 ─► defense ─► echo server
//!  clients: connect, 1 KiB echo, close (open loop)                 (kernel, synproxy + kernel,
//!  SYN-ACKs to random addresses arrive here and are dropped         or synshield --app echo)
//! ```
//!
//! The flood is bounded in seconds (`timeout`: hping3 ignores `-c` with `--flood`) and in
//! packets (an nftables quota in the client namespace drops flood SYNs past the budget; the
//! clients' own address is exempt). The shield has a default route through the client, as a
//! host has a gateway, so its answers to the flood's random sources go back over the veth and
//! cost what they cost on a real host; the client's kernel drops them (not addressed to it,
//! no forwarding). Nothing leaves the lab's namespaces.
//!
//! The clients are open-loop: a new connection every [`CLIENT_INTERVAL`] whatever the earlier
//! ones are doing (a closed loop would slow down with the server and hide its latency), each on
//! its own thread: connect (at most [`CONNECT_TIMEOUT`]), send 1 KiB, read it back, close.
//! Success: the 1 KiB came back intact. Connect time: from `connect()` to established; a SYN
//! the shield lost costs the client's 1-second SYN retransmission, which shows in the p99.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::*;
use crate::lab::CLIENT_V4;
use counters::{dev_counters, read_net_file};
use plot::Series;

/// The port the load test protects and serves echo on.
const PORT: u16 = 7;
/// Where synshield serves its metrics, inside the shield namespace.
const METRICS: &str = "127.0.0.1:9100";
/// One new client connection every 10 ms: 100 per second.
const CLIENT_INTERVAL: Duration = Duration::from_millis(10);
/// Longer than three SYN retransmissions' worth would be pointless: a client waits this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// What each client sends and expects back.
const MESSAGE_LEN: usize = 1024;
/// Packet budget per second of the flood's time bound: several times hping3's ~150 k pps here.
const MAX_FLOOD_PPS: u64 = 1_000_000;
/// An IPv4 and a bare TCP header: what the nftables quota counts per flood SYN.
const FLOOD_SYN_BYTES: u64 = 40;

/// What stands between the flood and the echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Defense {
    /// `net.ipv4.tcp_syncookies=1`: cookies only when the listener's SYN queue overflows.
    KernelCookiesOnOverflow,
    /// `net.ipv4.tcp_syncookies=2`: a cookie for every SYN.
    KernelCookiesAlways,
    /// nftables `synproxy` on the port (untracked SYNs answered with cookies by netfilter),
    /// the kernel listener behind it, `tcp_syncookies=1`.
    NftSynproxy,
    /// `synshield serve --app echo --xdp-mode native`.
    Synshield,
}

impl Defense {
    pub(super) const ALL: [Defense; 4] = [
        Defense::KernelCookiesOnOverflow,
        Defense::KernelCookiesAlways,
        Defense::NftSynproxy,
        Defense::Synshield,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Defense::KernelCookiesOnOverflow => "kernel, `tcp_syncookies=1`",
            Defense::KernelCookiesAlways => "kernel, `tcp_syncookies=2`",
            Defense::NftSynproxy => "nftables synproxy + kernel",
            Defense::Synshield => "**synshield** (native XDP)",
        }
    }

    fn plain_label(self) -> &'static str {
        match self {
            Defense::KernelCookiesOnOverflow => "kernel, tcp_syncookies=1",
            Defense::KernelCookiesAlways => "kernel, tcp_syncookies=2",
            Defense::NftSynproxy => "nftables synproxy + kernel",
            Defense::Synshield => "synshield (native XDP)",
        }
    }
}

/// One defense's figures over the measured window.
#[derive(Clone, Debug)]
pub(super) struct LoadResult {
    pub(super) defense: Defense,
    /// Flood SYNs hping3 pushed into the veth, per second.
    pub(super) flood_sent: f64,
    /// Frames that reached shield0, per second (flood and clients).
    pub(super) reached: f64,
    /// Frames the shield sent back that reached client0, per second: SYN-ACKs to the flood
    /// and the clients' traffic.
    pub(super) answered: f64,
    pub(super) clients: ClientStats,
}

/// What the clients saw.
#[derive(Clone, Debug, Default)]
pub(super) struct ClientStats {
    pub(super) attempts: usize,
    pub(super) succeeded: usize,
    pub(super) connect_timeouts: usize,
    pub(super) refused_or_reset: usize,
    pub(super) echo_failed: usize,
    /// Connect times of the successful connections, sorted.
    pub(super) connect_times: Vec<Duration>,
}

impl ClientStats {
    pub(super) fn success_percent(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let p = 100.0 * self.succeeded as f64 / self.attempts.max(1) as f64;
        p
    }

    /// The `q`-quantile of the connect times (nearest rank), in milliseconds.
    pub(super) fn connect_ms(&self, q: f64) -> Option<f64> {
        if self.connect_times.is_empty() {
            return None;
        }
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an index into a few thousand samples"
        )]
        let rank = ((q * self.connect_times.len() as f64).ceil() as usize)
            .clamp(1, self.connect_times.len());
        Some(self.connect_times[rank - 1].as_secs_f64() * 1000.0)
    }
}

/// How one client connection ended.
enum Outcome {
    Ok(Duration),
    ConnectTimeout,
    RefusedOrReset,
    EchoFailed,
}

/// Runs the load test against every defense, in the same run, and reports it.
pub(super) fn load_section(synshield: &Path, timing: Timing) -> Result<Section> {
    let interrupts = Interrupts::install()?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for defense in Defense::ALL {
        println!("xtask bench: load test against {}", defense.plain_label());
        match load_one(defense, synshield, timing, &interrupts) {
            Ok(r) => {
                println!(
                    "xtask bench:   flood {} sent, {} reached, {} answered; clients {:.1} % ok of {}, connect p50 {} p99 {}",
                    flood::pps(r.flood_sent),
                    flood::pps(r.reached),
                    flood::pps(r.answered),
                    r.clients.success_percent(),
                    r.clients.attempts,
                    ms(r.clients.connect_ms(0.5)),
                    ms(r.clients.connect_ms(0.99)),
                );
                results.push(r);
            }
            Err(e) => {
                interrupts.check()?;
                eprintln!("xtask bench: {} failed: {e:#}", defense.plain_label());
                failures.push((defense, brief_error(&e)));
            }
        }
    }
    let mut text = report(&results, &failures, timing);
    if !results.is_empty() {
        text.push_str(&plots(&results)?);
    }
    Ok(Section { text, incomplete: !failures.is_empty() })
}

fn load_one(
    defense: Defense,
    synshield: &Path,
    timing: Timing,
    interrupts: &Interrupts,
) -> Result<LoadResult> {
    interrupts.check()?;
    // Declared first, dropped last: everything below lives in it.
    let lab = Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() })
        .context("building the lab")?;
    lab.shield.run("ip", &["route", "add", "default", "via", &CLIENT_V4.to_string()])?;
    let mut echo = None;
    let mut shield_process = None;
    match defense {
        Defense::KernelCookiesOnOverflow | Defense::KernelCookiesAlways => {
            let mode = if defense == Defense::KernelCookiesAlways { "2" } else { "1" };
            lab.shield.sysctl("net.ipv4.tcp_syncookies", mode)?;
            echo = Some(EchoServer::start(&lab.shield)?);
        }
        Defense::NftSynproxy => {
            lab.shield.sysctl("net.ipv4.tcp_syncookies", "1")?;
            // The rules of nft(8), "SYNPROXY STATEMENT": SYNs to the port are not tracked, so
            // synproxy answers them with a cookie; a valid third ACK makes the connection,
            // which synproxy then opens to the listener behind it.
            let rules = format!(
                "table ip synshield_bench {{ \
                 chain pre {{ type filter hook prerouting priority raw ; tcp dport {PORT} tcp flags syn notrack ; }} ; \
                 chain in {{ type filter hook input priority filter ; \
                 tcp dport {PORT} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm ; \
                 ct state invalid drop ; }} ; }}"
            );
            lab.shield.run("nft", &[&rules]).context("loading the synproxy rules")?;
            // Recommended with synproxy: out-of-window ACKs are not picked up as connections.
            lab.shield.sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")?;
            echo = Some(EchoServer::start(&lab.shield)?);
        }
        Defense::Synshield => {
            let program = synshield.to_str().context("non-UTF-8 path to synshield")?;
            let mut cmd = lab.shield.command(program);
            cmd.args(["serve", "--iface", SHIELD_IF, "--port", &PORT.to_string(), "--app", "echo"])
                .args(["--xdp-mode", "native", "--quiet", "--metrics", METRICS]);
            let mut process = Process::spawn(&mut cmd, "synshield")?;
            process.wait_for_line(|l| l.starts_with("synshield: attached"), START_DEADLINE)?;
            shield_process = Some(process);
        }
    }

    // The flood: bounded in packets (quota) and seconds (timeout).
    let bound = timing.warmup + timing.window + GRACE;
    let quota = MAX_FLOOD_PPS * bound.as_secs() * FLOOD_SYN_BYTES;
    lab.client.run(
        "nft",
        &[&format!(
            "table ip synshield_flood_bound {{ chain out {{ type filter hook output priority 0 ; \
             ip saddr != {CLIENT_V4} tcp flags == syn quota over {quota} bytes drop ; }} ; }}"
        )],
    )?;
    let mut hping = lab.client.command("timeout");
    hping
        .args(["--signal=INT", "--kill-after=2", &format!("{}s", bound.as_secs())])
        .args(["hping3", "-q", "-S", "-p", &PORT.to_string(), "--flood", "--rand-source"])
        .arg(SHIELD_V4.to_string());
    let mut flood = Process::spawn(&mut hping, "hping3")?;
    let flood_pid = flood.pidfd()?;
    if interrupts.wait(Some(&flood_pid), timing.warmup)? {
        bail!("hping3 stopped during the warm-up: {}", flood.output_summary());
    }

    let before = (Instant::now(), dev(&lab.client, CLIENT_IF)?, dev(&lab.shield, SHIELD_IF)?);
    let clients = lab.client.enter(|| run_clients(timing.window))??;
    let after = (Instant::now(), dev(&lab.client, CLIENT_IF)?, dev(&lab.shield, SHIELD_IF)?);
    ensure!(
        flood.child.try_wait()?.is_none(),
        "hping3 stopped before the clients were done: {}",
        flood.output_summary()
    );
    flood.stop(libc::SIGINT)?;

    if let Some(mut process) = shield_process {
        let status = process.stop(libc::SIGTERM)?;
        ensure!(status.success(), "synshield exited with {status}: {}", process.output_summary());
    }
    drop(echo);
    let seconds = after.0.duration_since(before.0).as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "rates for people")]
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    Ok(LoadResult {
        defense,
        flood_sent: rate(
            before.1.tx_packets + before.1.tx_dropped,
            after.1.tx_packets + after.1.tx_dropped,
        ),
        reached: rate(before.2.rx_packets, after.2.rx_packets),
        answered: rate(before.1.rx_packets, after.1.rx_packets),
        clients,
    })
}

fn dev(ns: &Netns, ifname: &str) -> Result<counters::DevCounters> {
    dev_counters(&read_net_file(ns, "dev")?, ifname)
}

/// Opens a connection every [`CLIENT_INTERVAL`] for `window`, each on its own thread (in the
/// caller's network namespace, which threads inherit), and waits for all of them.
fn run_clients(window: Duration) -> Result<ClientStats> {
    let to = SocketAddr::new(SHIELD_V4.into(), PORT);
    let start = Instant::now();
    let mut threads: Vec<JoinHandle<Outcome>> = Vec::new();
    let mut next = start;
    while next < start + window {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        threads.push(
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || client(to))
                .context("starting a client thread")?,
        );
        next += CLIENT_INTERVAL;
    }
    let mut stats = ClientStats { attempts: threads.len(), ..ClientStats::default() };
    for t in threads {
        match t.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))? {
            Outcome::Ok(connect) => {
                stats.succeeded += 1;
                stats.connect_times.push(connect);
            }
            Outcome::ConnectTimeout => stats.connect_timeouts += 1,
            Outcome::RefusedOrReset => stats.refused_or_reset += 1,
            Outcome::EchoFailed => stats.echo_failed += 1,
        }
    }
    stats.connect_times.sort_unstable();
    Ok(stats)
}

/// One client: connect, send [`MESSAGE_LEN`] bytes, read them back, close.
fn client(to: SocketAddr) -> Outcome {
    let message: Vec<u8> = (0..MESSAGE_LEN).map(|i| u8::try_from(i % 251).unwrap_or(0)).collect();
    let t = Instant::now();
    let mut s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Outcome::ConnectTimeout,
        Err(_) => return Outcome::RefusedOrReset,
    };
    let connect = t.elapsed();
    let exchanged = (|| -> io::Result<bool> {
        s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        s.write_all(&message)?;
        let mut back = vec![0u8; MESSAGE_LEN];
        s.read_exact(&mut back)?;
        s.shutdown(Shutdown::Write)?;
        Ok(back == message)
    })();
    match exchanged {
        Ok(true) => Outcome::Ok(connect),
        _ => Outcome::EchoFailed,
    }
}

/// A kernel echo server on [`PORT`] in a namespace: one thread accepting, one per connection.
/// Dropping it shuts the listener down (which wakes the blocked accept) and joins the thread.
struct EchoServer {
    listener: Arc<std::net::TcpListener>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &Netns) -> Result<EchoServer> {
        let listener = Arc::new(
            ns.enter(|| std::net::TcpListener::bind(SocketAddrV4::new(SHIELD_V4, PORT)))?
                .context("listening in the shield namespace")?,
        );
        let l = Arc::clone(&listener);
        let acceptor = std::thread::spawn(move || {
            while let Ok((mut s, _)) = l.accept() {
                let _ = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(EchoServer { listener, acceptor: Some(acceptor) })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on the listener's own fd; it makes the blocked accept() fail.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.0} ms") },
    )
}

fn report(results: &[LoadResult], failures: &[(Defense, String)], timing: Timing) -> String {
    let mut s = String::from("## Load test: a hping3 SYN flood with real clients\n\n");
    let _ = write!(
        s,
        "The test a user would run: `hping3 -S -p {PORT} --flood --rand-source {SHIELD_V4}` in the \
         client namespace, bounded by `timeout` ({bound} s; hping3 ignores `-c` with `--flood`) and \
         by an nftables quota in the client namespace ({max} M SYNs at most), while real Linux \
         clients in the same namespace open a connection every {interval} ms ({per_s}/s, open \
         loop), send {MESSAGE_LEN} bytes, read them back from the echo server and close. \
         {warmup:.1} s of flood first, then {window:.0} s of clients under it. The shield has a \
         default route through the client, so its answers to the flood's random sources cost what \
         they cost on a real host. Four defenses, one after another in fresh labs, in this run. \
         A client succeeds when its {MESSAGE_LEN} bytes come back within {timeout} s; the connect \
         times are those of the successful clients (nearest rank); a lost SYN costs the client's \
         1-second retransmission. hping3 and the defense share the two CPUs (a veth's receive \
         work runs on the sender's CPU), so a cheaper defense lets hping3 send faster: read the \
         flood's rate next to the clients' figures.\n\n",
        bound = (timing.warmup + timing.window + GRACE).as_secs(),
        max = MAX_FLOOD_PPS * (timing.warmup + timing.window + GRACE).as_secs() / 1_000_000,
        interval = CLIENT_INTERVAL.as_millis(),
        per_s = 1000 / CLIENT_INTERVAL.as_millis(),
        warmup = timing.warmup.as_secs_f64(),
        window = timing.window.as_secs_f64(),
        timeout = CONNECT_TIMEOUT.as_secs(),
    );
    s.push_str(
        "| defense | flood sent (pps) | reached shield0 (pps) | answered to client0 (pps) | \
         clients ok | connect p50 | connect p99 | failures |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let c = &r.clients;
        let mut failed = Vec::new();
        for (n, what) in [
            (c.connect_timeouts, "connect timed out"),
            (c.refused_or_reset, "refused or reset"),
            (c.echo_failed, "echo failed"),
        ] {
            if n > 0 {
                failed.push(format!("{n} {what}"));
            }
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | **{:.1} %** of {} | {} | **{}** | {} |",
            r.defense.label(),
            flood::pps(r.flood_sent),
            flood::pps(r.reached),
            flood::pps(r.answered),
            c.success_percent(),
            c.attempts,
            ms(c.connect_ms(0.5)),
            ms(c.connect_ms(0.99)),
            if failed.is_empty() { "none".to_owned() } else { failed.join(", ") },
        );
    }
    s.push('\n');
    for (defense, error) in failures {
        let _ = writeln!(s, "- {}: **failed**: {error}", defense.label());
    }
    let find = |d: Defense| results.iter().find(|r| r.defense == d);
    if let (Some(ours), Some(kernel)) =
        (find(Defense::Synshield), find(Defense::KernelCookiesAlways))
    {
        let (p99, k99) = (ours.clients.connect_ms(0.99), kernel.clients.connect_ms(0.99));
        let verdict = match (p99, k99) {
            (Some(a), Some(b)) if ours.clients.success_percent() >= 100.0 && a <= b => "met",
            _ => "**not met**",
        };
        let _ = writeln!(
            s,
            "Goal (100 % of clients served, p99 no worse than the kernel's cookies in the same run): \
             {verdict}: synshield {:.1} % with p99 {}, the kernel (`tcp_syncookies=2`) {:.1} % with p99 {}.\n",
            ours.clients.success_percent(),
            ms(p99),
            kernel.clients.success_percent(),
            ms(k99),
        );
    }
    s
}

fn plots(results: &[LoadResult]) -> Result<String> {
    let names: Vec<String> = results.iter().map(|r| r.defense.plain_label().to_owned()).collect();
    let success = plot::bar_chart(
        "Clients served during the flood",
        "% of connections that completed the echo",
        &names,
        &[Series {
            name: "served",
            values: results.iter().map(|r| Some(r.clients.success_percent())).collect(),
        }],
    )?;
    let latency = plot::bar_chart(
        "Connect time of the clients during the flood",
        "milliseconds",
        &names,
        &[
            Series {
                name: "p50",
                values: results.iter().map(|r| r.clients.connect_ms(0.5)).collect(),
            },
            Series {
                name: "p99",
                values: results.iter().map(|r| r.clients.connect_ms(0.99)).collect(),
            },
        ],
    )?;
    Ok(format!(
        "{}{}",
        plot::save("load-test-served", "Clients served during the flood, per defense", &success)?,
        plot::save(
            "load-test-connect",
            "Connect time p50 and p99 during the flood, per defense",
            &latency
        )?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_success_counts_attempts() {
        let stats = ClientStats {
            attempts: 4,
            succeeded: 3,
            connect_times: vec![
                Duration::from_millis(1),
                Duration::from_millis(2),
                Duration::from_secs(1),
            ],
            ..ClientStats::default()
        };
        assert!((stats.success_percent() - 75.0).abs() < 1e-9);
        assert_eq!(stats.connect_ms(0.5), Some(2.0));
        assert_eq!(stats.connect_ms(0.99), Some(1000.0));
        assert_eq!(ClientStats::default().connect_ms(0.5), None);
    }
}
