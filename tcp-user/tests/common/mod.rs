//! Helpers shared by the root tests: a synshield process guard and line waiting.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use tcp_user::lab::{Lab, LabOptions, Netns};

/// Upper bound for an event a test waits for; the wait ends as soon as the event happens.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);

/// Where the tests' synshield serves its metrics (`--metrics`), inside the shield namespace.
pub const METRICS: &str = "127.0.0.1:9100";

/// The lab with an XDP_PASS program on the client's veth, which native XDP_TX on the
/// shield's end needs to deliver anything.
pub fn lab() -> Lab {
    Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() })
        .expect("building the lab")
}

/// `synshield serve` on the lab's shield end with native XDP, protecting `port`, without the
/// status line, with its metrics at [`METRICS`]; then `extra`.
pub fn serve_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--iface",
        tcp_user::lab::SHIELD_IF,
        "--port",
        port,
        "--xdp-mode",
        "native",
        "--quiet",
        "--metrics",
        METRICS,
    ];
    args.extend(extra);
    args
}

/// synshield's Prometheus text from [`METRICS`], fetched from the calling thread's network
/// namespace (enter the shield's first).
pub fn scrape() -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let to = METRICS.parse().map_err(std::io::Error::other)?;
    let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of one sample (`name{labels}` as printed) in a Prometheus text.
pub fn sample_of(text: &str, sample: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// synshield's metrics text, scraped inside the shield namespace.
pub fn metrics(lab: &Lab) -> String {
    lab.shield.enter(scrape).expect("entering the shield namespace").expect("scraping /metrics")
}

/// One sample of synshield's `/metrics` at [`METRICS`] (`name{labels}` as printed).
pub fn metric(lab: &Lab, sample: &str) -> u64 {
    let text = metrics(lab);
    sample_of(&text, sample).unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// Waits (bounded) until `sample` is `value`. Counters are published four times a second and
/// a scrape is the only way to see them, so this polls.
pub fn wait_metric(lab: &Lab, sample: &str, value: u64) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        let v = metric(lab, sample);
        if v == value {
            return;
        }
        assert!(Instant::now() < deadline, "{sample} stayed {v}, expected {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `sample` is at least `value`; returns it. Counters are published
/// four times a second and a scrape is the only way to see them, so this polls.
pub fn wait_metric_at_least(lab: &Lab, sample: &str, value: u64) -> u64 {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        let v = metric(lab, sample);
        if v >= value {
            return v;
        }
        assert!(Instant::now() < deadline, "{sample} stayed at {v}, expected {value} or more");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `synshield` process started by the test, killed by PID on drop if still running.
pub struct Synshield {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
}

impl Synshield {
    /// Starts `synshield ARGS` in `ns` and waits for its "attached" line.
    pub fn start(ns: &Netns, args: &[&str]) -> Synshield {
        Synshield::spawn(ns.command(env!("CARGO_BIN_EXE_synshield")).args(args))
    }

    /// Runs `command` (synshield, as the caller set it up) with its output piped, and waits
    /// for its "attached" line.
    pub fn spawn(command: &mut std::process::Command) -> Synshield {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn synshield");
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        let s = Synshield { child, stdout, stderr };
        if let Err(seen) = wait_for_line(&s.stdout, |l| l.starts_with("synshield: attached")) {
            let errors: Vec<String> = s.stderr.try_iter().collect();
            panic!("synshield did not attach ({command:?}); stdout {seen:?}; stderr {errors:?}");
        }
        s
    }

    /// Sends SIGTERM to the process (by its PID).
    pub fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: signalling a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
}

impl Drop for Synshield {
    fn drop(&mut self) {
        let status = self.child.try_wait();
        if matches!(status, Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // What synshield said is the first thing to read when a test fails.
            eprintln!("synshield exit status before the test ended it: {status:?}");
            for line in self.stderr.try_iter() {
                eprintln!("synshield stderr: {line}");
            }
        }
    }
}

/// Lines of a pipe, read on a thread, as a channel.
pub fn lines<R: std::io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line matching `pred`; returns it, or every line seen if the deadline passed or
/// the stream ended first.
pub fn wait_for_line(
    rx: &Receiver<String>,
    pred: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}

/// `read`, again when a signal interrupted it. A socket read with a timeout (SO_RCVTIMEO) is
/// never restarted by the kernel: any signal to the process, or a stop and continue of it,
/// ends it with EINTR, which `Read::read` passes on (`read_to_end` and `write_all` retry).
pub fn read_some(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so data is neither trivially compressible
/// nor periodic.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Sends `data` through an echo on `stream` (written from another thread, then the write
/// side shut) while reading everything that comes back, and checks that it is `data`: the
/// same length and SHA-256.
pub fn echo_checked(stream: std::net::TcpStream, data: Vec<u8>) {
    use sha2::{Digest as _, Sha256};
    use std::io::Write as _;
    let len = data.len();
    let sent = Sha256::digest(&data);
    let mut writer = stream.try_clone().expect("cloning the stream");
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("sending to the echo");
        writer.shutdown(std::net::Shutdown::Write).expect("shutting down the write side");
    });
    let mut reader = stream;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    loop {
        let n = read_some(&mut reader, &mut buf).expect("reading the echo");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n;
    }
    sender.join().expect("the sender thread");
    assert_eq!(got, len, "echoed length");
    assert_eq!(hasher.finalize(), sent, "echoed content (SHA-256)");
}
