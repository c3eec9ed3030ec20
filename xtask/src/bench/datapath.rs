//! The data path in the lab: goodput, connection rate and memory per idle connection, each
//! next to the Linux kernel doing the same work in the same run (issue 8's goals: goodput at
//! least 0.6x kernel-to-kernel both ways, connections per second at least 1.2x nginx, at most
//! 2 KiB of process memory per idle connection).
//!
//! Every row runs in its own lab with GSO, TSO, GRO and TX checksum offload off on both veth
//! ends (so both stacks cut and checksum every segment themselves, as synshield must), and an
//! XDP_PASS program on the client end (native XDP_TX on a veth needs one on the peer).
//!
//! - **Goodput**: iperf3 (5 s, one flow) client to server and server to client (`-R`), against
//!   a kernel iperf3 server on shield0, and through `synshield --app proxy` to the same server on
//!   the shield's loopback. Echo and discard are driven by a plain Linux socket client: discard
//!   receives a stream as fast as the client can send it; echo sends it back while the client
//!   is still sending. Their kernel references are a kernel discard and echo server (threads in
//!   the shield namespace) fed the same way. Each row is three rounds of kernel-then-synshield
//!   in one lab (one with `--quick`); the medians are reported.
//! - **Connections per second**: wrk with `Connection: close` (every request a new connection)
//!   against `synshield --app http` and nginx (Debian's) serving the same body.
//! - **Memory per idle connection**: a client opens 10,000 then 50,000 idle connections to an
//!   echo port. For synshield the figure is the slope of its resident set size between the two;
//!   the kernel's is the slope of the kernel's slab memory with a kernel server holding the
//!   sockets, minus the slope measured with synshield (which is the client's own sockets alone).
//!   After the client closes them all, synshield's resident set size again: the memory it gave
//!   back.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};

use super::hold::Holder;
use super::*;

/// Where synshield serves its metrics, inside the shield namespace.
const METRICS: &str = "127.0.0.1:9100";

/// Payload bytes synshield copied per payload byte it received or sent, from its metrics.
fn copies_per_byte(lab: &Lab) -> Result<f64> {
    let text = lab.shield.enter(|| -> Result<String> {
        let mut s = TcpStream::connect(METRICS).context("connecting to synshield's metrics")?;
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })??;
    let value = |name: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("no {name} in synshield's metrics"))
    };
    let copied = value("synshield_payload_copied_bytes_total")?;
    let payload = value("synshield_payload_received_bytes_total")?
        + value("synshield_payload_sent_bytes_total")?;
    ensure!(payload > 0.0, "synshield moved no payload");
    Ok(copied / payload)
}

/// Port of every data-path service in the lab.
const PORT: u16 = 7;
/// Bytes each echo or discard run moves.
const STREAM_BYTES: usize = 256 << 20;
/// iperf3 run length, seconds.
const IPERF_SECS: u32 = 5;
/// Rounds of each goodput row (kernel, then synshield), of which the medians are reported.
const GOODPUT_ROUNDS: usize = 3;
/// wrk run length and connections in flight.
const WRK_SECS: u32 = 5;
const WRK_CONNECTIONS: u32 = 32;
/// The two connection counts of the memory slope.
const IDLE_LOW: usize = 10_000;
const IDLE_HIGH: usize = 50_000;
/// Body both HTTP servers answer with.
const HTTP_BODY: &str = "synshield\n";

pub(super) fn datapath_section(synshield: &Path, quick: bool) -> Result<Section> {
    let interrupts = Interrupts::install()?;
    let mut text = String::from("## Data path in the lab\n\n");
    text.push_str(
        "GSO, TSO, GRO and TX checksum offload off on both veth ends; one flow; kernel and \
         synshield measured in the same run. How each row is made: `xtask/src/bench/datapath.rs`.\n\n",
    );
    let mut incomplete = false;
    let mut part = |title: &str, r: Result<String>| match r {
        Ok(t) => text.push_str(&t),
        Err(e) => {
            eprintln!("xtask bench: {title} failed: {e:#}");
            let _ = write!(text, "### {title}\n\n**Failed:** {}\n\n", brief_error(&e));
            incomplete = true;
        }
    };
    part("Goodput", goodput(synshield, &interrupts, if quick { 1 } else { GOODPUT_ROUNDS }));
    interrupts.check()?;
    part("Connections per second", connection_rate(synshield, &interrupts));
    interrupts.check()?;
    let (low, high) = if quick { (IDLE_LOW / 5, IDLE_HIGH / 5) } else { (IDLE_LOW, IDLE_HIGH) };
    part("Memory per idle connection", idle_memory(synshield, low, high));
    Ok(Section { text, incomplete })
}

/// A lab for the data path: offloads off both ends, XDP_PASS on the client.
fn datapath_lab() -> Result<Lab> {
    let lab = Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() })
        .context("building the lab")?;
    for (ns, ifname) in [(&lab.client, CLIENT_IF), (&lab.shield, SHIELD_IF)] {
        ns.run("ethtool", &["-K", ifname, "gso", "off", "tso", "off", "gro", "off", "tx", "off"])?;
    }
    Ok(lab)
}

/// Starts `synshield serve` on shield0 (native XDP) with `args` and waits until it serves.
fn start_synshield(lab: &Lab, synshield: &Path, args: &[&str]) -> Result<Process> {
    let program = synshield.to_str().context("non-UTF-8 path to synshield")?;
    let mut cmd = lab.shield.command(program);
    cmd.args(["serve", "--iface", SHIELD_IF, "--xdp-mode", "native", "--quiet"])
        .args(["--metrics", METRICS])
        .args(args);
    let mut process = Process::spawn(&mut cmd, "synshield")?;
    process.wait_for_line(|l| l.starts_with("synshield: attached"), START_DEADLINE)?;
    Ok(process)
}

fn stop_synshield(mut process: Process) -> Result<()> {
    let status = process.stop(libc::SIGTERM)?;
    let errors: Vec<String> = process.stderr.try_iter().map(|(_, l)| l).collect();
    ensure!(status.success(), "synshield exited with {status}; its errors: {errors:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Goodput.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Client to server (upload).
    Up,
    /// Server to client (download; iperf3 `-R`).
    Down,
}

/// Bits per second an iperf3 client in the client namespace measured against `addr`.
fn iperf3(lab: &Lab, addr: SocketAddr, dir: Direction) -> Result<f64> {
    let port = addr.port().to_string();
    let secs = IPERF_SECS.to_string();
    let mut cmd = lab.client.command("timeout");
    cmd.args(["30", "iperf3", "-c", &addr.ip().to_string(), "-p", &port, "-t", &secs, "-J"]);
    if dir == Direction::Down {
        cmd.arg("-R");
    }
    let out = cmd.stdin(Stdio::null()).output().context("running iperf3")?;
    let json = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "iperf3 failed ({}): {}", out.status, json_error(&json));
    json_number_after(&json, "\"sum_received\"", "\"bits_per_second\"")
        .context("no sum_received.bits_per_second in iperf3's JSON")
}

/// iperf3's `"error"` field, or the start of its output.
fn json_error(json: &str) -> String {
    json.find("\"error\"")
        .map_or_else(|| json.chars().take(300).collect(), |i| json[i..].chars().take(200).collect())
}

/// The number after the first `key` that follows `section` in a JSON text.
fn json_number_after(json: &str, section: &str, key: &str) -> Option<f64> {
    let rest = &json[json.find(section)?..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))?;
    rest[..end].parse().ok()
}

/// A kernel iperf3 server in the shield namespace, serving one test at a time.
fn iperf3_server(lab: &Lab, bind: &str, port: u16) -> Result<Process> {
    let mut cmd = lab.shield.command("iperf3");
    // --forceflush: piped, iperf3 would buffer the line we wait for.
    cmd.args(["-s", "--forceflush", "-B", bind, "-p", &port.to_string()]);
    let mut p = Process::spawn(&mut cmd, "iperf3 server")?;
    p.wait_for_line(|l| l.contains("Server listening"), START_DEADLINE)?;
    Ok(p)
}

/// Sends `STREAM_BYTES` to `addr` from the client namespace and, when `echo`, reads as many back
/// at the same time. Returns the goodput in bits per second of the stream (one direction).
fn stream_goodput(lab: &Lab, addr: SocketAddr, echo: bool) -> Result<f64> {
    let elapsed = lab.client.enter(move || -> Result<Duration> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        let mut reader = stream.try_clone()?;
        let started = Instant::now();
        let receiver = std::thread::spawn(move || -> std::io::Result<usize> {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            loop {
                match read_some(&mut reader, &mut buf)? {
                    0 => return Ok(total),
                    n => total += n,
                }
            }
        });
        let mut writer = stream;
        let chunk = vec![0x5au8; 1 << 16];
        let mut sent = 0;
        while sent < STREAM_BYTES {
            let n = chunk.len().min(STREAM_BYTES - sent);
            writer.write_all(&chunk[..n])?;
            sent += n;
        }
        writer.shutdown(Shutdown::Write)?;
        let back = receiver.join().map_err(|_| anyhow::anyhow!("the reader panicked"))??;
        if echo {
            ensure!(back == STREAM_BYTES, "echo returned {back} of {STREAM_BYTES} bytes");
        }
        Ok(started.elapsed())
    })??;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    Ok(STREAM_BYTES as f64 * 8.0 / elapsed.as_secs_f64())
}

/// A kernel echo (or discard) server in the shield namespace, on a thread that serves one
/// connection and ends.
fn kernel_stream_server(lab: &Lab, echo: bool) -> Result<std::thread::JoinHandle<()>> {
    let listener = lab
        .shield
        .enter(|| std::net::TcpListener::bind((SHIELD_V4, PORT)))?
        .context("listening in the shield namespace")?;
    Ok(std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        if echo {
            let Ok(mut w) = s.try_clone() else { return };
            let _ = std::io::copy(&mut s, &mut w);
            let _ = w.shutdown(Shutdown::Write);
        } else {
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
    }))
}

struct GoodputRow {
    what: &'static str,
    kernel: f64,
    synshield: f64,
    /// The median of the rounds' synshield / kernel ratios.
    ratio: f64,
    /// synshield's payload bytes copied per payload byte moved (the most of the rounds).
    copies: f64,
}

impl GoodputRow {
    /// The row of `runs` (kernel, synshield, copies per byte), one per round.
    fn median_of(what: &'static str, runs: &[(f64, f64, f64)]) -> GoodputRow {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        GoodputRow {
            what,
            kernel: median(runs.iter().map(|r| r.0).collect()),
            synshield: median(runs.iter().map(|r| r.1).collect()),
            ratio: median(runs.iter().map(|r| r.1 / r.0).collect()),
            copies: runs.iter().map(|r| r.2).fold(0.0, f64::max),
        }
    }
}

fn goodput(synshield: &Path, interrupts: &Interrupts, rounds: usize) -> Result<String> {
    let shield = SocketAddr::from((SHIELD_V4, PORT));
    let mut rows = Vec::new();
    for dir in [Direction::Up, Direction::Down] {
        let what = match dir {
            Direction::Up => "iperf3 client to server, `--app proxy`",
            Direction::Down => "iperf3 server to client (`-R`), `--app proxy`",
        };
        let lab = datapath_lab()?;
        let mut runs = Vec::new();
        for _ in 0..rounds {
            interrupts.check()?;
            let kernel = {
                let _server = iperf3_server(&lab, &SHIELD_V4.to_string(), PORT)?;
                iperf3(&lab, shield, dir)?
            };
            let (proxied, copies) = {
                let _server = iperf3_server(&lab, "127.0.0.1", PORT + 1)?;
                let upstream = format!("127.0.0.1:{}", PORT + 1);
                let p = start_synshield(
                    &lab,
                    synshield,
                    &["--port", &PORT.to_string(), "--app", "proxy", "--upstream", &upstream],
                )?;
                let r = iperf3(&lab, shield, dir);
                let copies = copies_per_byte(&lab);
                stop_synshield(p)?;
                (r?, copies?)
            };
            println!("xtask bench: {what}: kernel {}, synshield {}", gbps(kernel), gbps(proxied));
            runs.push((kernel, proxied, copies));
        }
        rows.push(GoodputRow::median_of(what, &runs));
    }
    for (echo, what) in [(false, "stream to `--app discard`"), (true, "stream to `--app echo`")] {
        let lab = datapath_lab()?;
        let mut runs = Vec::new();
        for _ in 0..rounds {
            interrupts.check()?;
            let server = kernel_stream_server(&lab, echo)?;
            let kernel = stream_goodput(&lab, shield, echo)?;
            let _ = server.join();
            let app = if echo { "echo" } else { "discard" };
            let p = start_synshield(&lab, synshield, &["--port", &PORT.to_string(), "--app", app])?;
            let r = stream_goodput(&lab, shield, echo);
            let copies = copies_per_byte(&lab);
            stop_synshield(p)?;
            let (ours, copies) = (r?, copies?);
            println!("xtask bench: {what}: kernel {}, synshield {}", gbps(kernel), gbps(ours));
            runs.push((kernel, ours, copies));
        }
        rows.push(GoodputRow::median_of(what, &runs));
    }
    let mut t = String::from(
        "### Goodput\n\n| traffic | kernel to kernel | through synshield | ratio (goal >= 0.6) | \
         bytes copied per payload byte (goal <= 2) |\n|---|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | **{:.2}** | {:.2} |",
            r.what,
            gbps(r.kernel),
            gbps(r.synshield),
            r.ratio,
            r.copies
        );
    }
    let _ = writeln!(
        t,
        "\nEach row: {rounds} rounds, the kernel then synshield in each, in the same lab; the \
         rates are the medians of the rounds, the ratio the median of the rounds' ratios (a \
         5-second iperf3 run on this shared 2-CPU machine varies by a quarter from one run to \
         the next, so one pair would measure the noise). The echo rows count the stream once \
         (the bytes sent; as many come back at the same time). {} MiB per echo and discard run. Copies are synshield's own memcpy of payload \
         (into receive buffers, receive to send buffer, send buffer into frames; a retransmission \
         copies again), over the payload it received plus sent; the kernel's copies into and out \
         of sockets and AF_XDP's copy mode are not counted.\n",
        STREAM_BYTES >> 20
    );
    Ok(t)
}

fn gbps(bits: f64) -> String {
    format!("{:.2} Gbit/s", bits / 1e9)
}

// ---------------------------------------------------------------------------------------------
// Connections per second.

/// Requests per second wrk reached against `url` from the client namespace.
fn wrk(lab: &Lab, url: &str) -> Result<f64> {
    let out = lab
        .client
        .command("timeout")
        .args(["30", "wrk", "-t", "1", "-c", &WRK_CONNECTIONS.to_string()])
        .args(["-d", &format!("{WRK_SECS}s"), "-H", "Connection: close", url])
        .stdin(Stdio::null())
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "wrk failed ({}): {text}", out.status);
    let errors = text.lines().find(|l| l.contains("Socket errors") || l.contains("Non-2xx"));
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    if let Some(e) = errors {
        println!("xtask bench: wrk against {url}: {}", e.trim());
    }
    Ok(rate)
}

fn nginx_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
         \x20 fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
         \x20 server {{\n    listen {SHIELD_V4}:{PORT} backlog=4096;\n\
         \x20   location / {{ default_type text/plain; return 200 \"{}\"; }}\n  }}\n}}\n",
        HTTP_BODY.escape_default()
    )
}

fn connection_rate(synshield: &Path, interrupts: &Interrupts) -> Result<String> {
    let url = format!("http://{SHIELD_V4}:{PORT}/");
    let lab = datapath_lab()?;
    let dir = TempDir::new()?;
    let conf = dir.path().join("nginx.conf");
    fs::write(&conf, nginx_config(dir.path()))?;
    let nginx = {
        let conf = conf.to_str().context("non-UTF-8 temporary path")?;
        let mut cmd = lab.shield.command("nginx");
        cmd.args(["-c", conf]);
        let mut p = Process::spawn(&mut cmd, "nginx")?;
        wait_for_port(&lab, SocketAddr::from((SHIELD_V4, PORT)))?;
        let r = wrk(&lab, &url);
        p.stop(libc::SIGQUIT)?;
        r?
    };
    interrupts.check()?;
    let lab = datapath_lab()?;
    let p = start_synshield(
        &lab,
        synshield,
        &["--port", &PORT.to_string(), "--app", "http", "--http-body", HTTP_BODY],
    )?;
    let r = wrk(&lab, &url);
    stop_synshield(p)?;
    let ours = r?;
    println!("xtask bench: connections per second: nginx {nginx:.0}, synshield {ours:.0}");
    Ok(format!(
        "### Connections per second\n\n\
         wrk, one thread, {WRK_CONNECTIONS} connections, {WRK_SECS} s, `Connection: close` (every \
         request a new connection, closed by the server), body `{}`.\n\n\
         | server | connections/s | ratio to nginx (goal >= 1.2) |\n|---|---:|---:|\n\
         | nginx (Debian, one worker) | {nginx:.0} | 1.00 |\n\
         | synshield `--app http` | {ours:.0} | **{:.2}** |\n\n",
        HTTP_BODY.escape_default(),
        ours / nginx
    ))
}

/// Waits until something accepts connections at `addr` (from the client namespace).
fn wait_for_port(lab: &Lab, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let up = lab
            .client
            .enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())?;
        if up {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "nothing listens at {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Memory per idle connection.

/// `Slab:` of /proc/meminfo, in bytes (kernel memory for sockets, files, dentries, ...).
fn kernel_slab_bytes() -> Result<u64> {
    let text = fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no Slab: in /proc/meminfo")
}

/// Resident set size of a process, in bytes.
fn rss_bytes(pid: u32) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmRSS in /proc/PID/status")
}

/// Holder processes each take a share of the connections, on a port of their own.
const HOLDERS: u16 = 4;

/// The echo ports the holders use.
fn holder_ports() -> impl Iterator<Item = u16> {
    PORT..PORT + HOLDERS
}

/// Has every client holder hold `total / HOLDERS` connections.
fn open_idle(clients: &mut [Holder], total: usize) -> Result<()> {
    for c in clients {
        c.open(total / usize::from(HOLDERS))?;
    }
    Ok(())
}

fn client_holders(lab: &Lab) -> Result<Vec<Holder>> {
    lab.client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    holder_ports()
        .map(|p| Holder::start(&lab.client, "connect", SocketAddr::from((SHIELD_V4, p))))
        .collect()
}

fn idle_memory(synshield: &Path, low: usize, high: usize) -> Result<String> {
    #[expect(clippy::cast_precision_loss, reason = "bytes per connection")]
    let per = |a: u64, b: u64| (b as f64 - a as f64) / (high - low) as f64;

    // The kernel holding the sockets: slab slope, client and server sockets together.
    let lab = datapath_lab()?;
    let servers: Vec<Holder> = holder_ports()
        .map(|p| Holder::start(&lab.shield, "serve", SocketAddr::from((SHIELD_V4, p))))
        .collect::<Result<_>>()?;
    let mut clients = client_holders(&lab)?;
    open_idle(&mut clients, low)?;
    let k_low = kernel_slab_bytes()?;
    open_idle(&mut clients, high)?;
    let k_high = kernel_slab_bytes()?;
    let kernel_both = per(k_low, k_high);
    for h in clients.into_iter().chain(servers) {
        h.finish()?;
    }
    drop(lab);

    // synshield holding them: its resident set size, and the slab slope of the client alone.
    let lab = datapath_lab()?;
    let ports = holder_ports().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let max = (2 * high).to_string();
    let p = start_synshield(&lab, synshield, &["--port", &ports, "--max-conns", &max])?;
    let pid = p.child.id();
    let base = rss_bytes(pid)?;
    let mut clients = client_holders(&lab)?;
    open_idle(&mut clients, low)?;
    let (r_low, c_low) = (rss_bytes(pid)?, kernel_slab_bytes()?);
    open_idle(&mut clients, high)?;
    let (r_high, c_high) = (rss_bytes(pid)?, kernel_slab_bytes()?);
    for h in clients {
        h.finish()?;
    }
    // Give the shield time to see every FIN and close its side (the echo answers with its own).
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_bytes(pid)?;
    stop_synshield(p)?;

    let ours = per(r_low, r_high);
    let client_only = per(c_low, c_high);
    let kernel = kernel_both - client_only;
    println!(
        "xtask bench: idle connection: synshield {ours:.0} B, kernel {kernel:.0} B; synshield \
         resident {} MiB at start, {} MiB at {high}, {} MiB after closing",
        base >> 20,
        r_high >> 20,
        after >> 20
    );
    Ok(format!(
        "### Memory per idle connection\n\n\
         Linux clients ({HOLDERS} processes, one port each) open {low} then {high} connections to \
         echo ports and leave them idle (each has echoed one byte). Slope between the two counts. \
         The kernel's figure is its slab growth with a kernel server holding the sockets, less the \
         growth with synshield holding them (the clients' own sockets).\n\n\
         | holder | bytes per idle connection | goal |\n|---|---:|---|\n\
         | Linux kernel (slab: socket, file, dentry, ...) | {kernel:.0} | |\n\
         | synshield (process resident set) | **{ours:.0}** | <= 2048 |\n\n\
         synshield's resident set: {} KiB before the connections, {} KiB with {high}, {} KiB \
         3 s after the clients closed them all.\n\n",
        base >> 10,
        r_high >> 10,
        after >> 10
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf3_json() {
        let json = r#"{"end": {"sum_sent": {"bits_per_second": 1.5e9},
            "sum_received": {"seconds": 5, "bits_per_second": 7712345678.25, "sender": false}}}"#;
        assert_eq!(
            json_number_after(json, "\"sum_received\"", "\"bits_per_second\""),
            Some(7_712_345_678.25)
        );
        assert_eq!(json_number_after(json, "\"nope\"", "\"bits_per_second\""), None);
    }

    #[test]
    fn nginx_config_answers_the_body() {
        let c = nginx_config(Path::new("/tmp/x"));
        assert!(c.contains("return 200 \"synshield\\n\";"), "{c}");
        assert!(c.contains("listen 198.18.0.2:7"), "{c}");
    }
}
