//! Prometheus text exposition of the XDP counters and the data path's counters, served at
//! `/metrics` by `synshield serve --metrics ADDR:PORT`.
//!
//! Every metric is one entry of [`METRICS`]: name, type, help and how its value is read from
//! [`Sources`]. A new metric is one more line there (and one in docs/metrics.md, which a test
//! keeps in step). Names follow Prometheus' conventions: `synshield_` first, the base unit
//! (`_bytes`, `_seconds`) last, and `_total` after it on counters.

use std::fmt::Write as _;
use std::sync::Arc;

use tcp_common::Counter;
use tcp_engine::State;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::datapath::run::QueueStats;
use crate::stats::CounterSnapshot;

/// Everything the metrics are read from, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The XDP program's counters, summed over CPUs.
    pub xdp: &'a CounterSnapshot,
    /// The data path's counters, summed over queues.
    pub data: &'a QueueStats,
    /// Each queue's counters.
    pub queues: &'a [QueueStats],
    /// How the XDP program answers SYNs now (adaptive and stateful modes).
    pub defense: &'a tcp_common::adaptive::SynDefense,
    /// What does not change while synshield runs.
    pub info: &'a Info,
}

/// Facts about the running instance, for `synshield_info` and `synshield_start_time_seconds`.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// The interface the XDP program is attached to.
    pub iface: String,
    /// `native` or `generic`.
    pub xdp_mode: String,
    /// How SYNs are answered: `cookies` (every SYN, statelessly, in XDP).
    pub defense: String,
    /// Unix time the process started, in seconds.
    pub start_time_seconds: u64,
}

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts from zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The samples of one metric: `(labels, value)` pairs handed to the callback.
pub type Samples = fn(&Sources, &mut dyn FnMut(&[(&str, &str)], u64));

/// How a metric's value is read.
#[derive(Clone, Copy)]
pub enum Value {
    /// One sample without labels.
    One(fn(&Sources) -> u64),
    /// Several samples, told apart by labels.
    Labeled(Samples),
}

/// One metric family: the single place that names it, types it and says what it counts.
#[derive(Clone, Copy)]
pub struct Metric {
    /// The full name (`synshield_...`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// How to read it.
    pub value: Value,
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metric")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

const fn counter(name: &'static str, help: &'static str, f: fn(&Sources) -> u64) -> Metric {
    Metric { name, kind: Kind::Counter, help, value: Value::One(f) }
}

const fn gauge(name: &'static str, help: &'static str, f: fn(&Sources) -> u64) -> Metric {
    Metric { name, kind: Kind::Gauge, help, value: Value::One(f) }
}

const fn labeled(name: &'static str, kind: Kind, help: &'static str, f: Samples) -> Metric {
    Metric { name, kind, help, value: Value::Labeled(f) }
}

/// Every metric synshield exports, in the order it prints them.
#[rustfmt::skip]
pub const METRICS: &[Metric] = &[
    labeled("synshield_info", Kind::Gauge, "Always 1; the labels describe the running instance.", |s, out| {
        let version = env!("CARGO_PKG_VERSION");
        out(&[("version", version), ("iface", &s.info.iface), ("xdp_mode", &s.info.xdp_mode), ("defense", &s.info.defense)], 1);
    }),
    gauge("synshield_start_time_seconds", "Unix time the process started.", |s| s.info.start_time_seconds),
    gauge("synshield_syn_defense_cookie_cpus", "Adaptive mode: CPUs that see a SYN flood now, which makes every CPU answer with cookies (0 in peace and in the other modes).", |s| u64::from(s.defense.cpus_on_cookies)),
    labeled("synshield_syn_defense_switches_total", Kind::Counter, "Switches of a CPU's SYN answer in adaptive mode, by what it switched to.", |s, out| {
        out(&[("to", "cookies")], s.defense.to_cookies);
        out(&[("to", "stateful")], s.defense.to_stateful);
    }),
    counter("synshield_half_open_opened_total", "SYNs answered statefully: half-open connections opened (SYN-RECEIVED).", |s| s.data.shard.half_open_opened),
    counter("synshield_syns_dropped_total", "SYNs handed over for a stateful answer and dropped because the half-open or connection table was full.", |s| s.data.shard.syns_dropped),
    counter("synshield_xdp_rx_frames_total", "Frames the XDP program saw.", |s| s.xdp.get(Counter::RxFrames)),
    labeled("synshield_xdp_frames_total", Kind::Counter, "Frames by the XDP program's verdict (pass_*, drop_*, tx_*, redirect_*).", |s, out| {
        for &c in Counter::ALL.iter().filter(|c| **c != Counter::RxFrames) {
            out(&[("verdict", c.name())], s.xdp.get(c));
        }
    }),
    labeled("synshield_connections", Kind::Gauge, "Connections in the engine, by TCP state.", |s, out| {
        for state in State::ALL {
            out(&[("state", &state.to_string())], s.data.table.by_state[state.index()] as u64);
        }
    }),
    counter("synshield_payload_received_bytes_total", "Payload bytes received in order.", |s| s.data.table.totals.bytes_in),
    counter("synshield_payload_sent_bytes_total", "Payload bytes sent, retransmissions included.", |s| s.data.table.totals.bytes_out),
    counter("synshield_segments_received_total", "TCP segments received by the engine.", |s| s.data.table.totals.segments_in),
    counter("synshield_segments_sent_total", "TCP segments sent by the engine.", |s| s.data.table.totals.segments_out),
    counter("synshield_retransmissions_total", "Segments retransmitted.", |s| s.data.table.totals.retransmits),
    counter("synshield_retransmission_timeouts_total", "Retransmission timer expiries.", |s| s.data.table.totals.timeouts),
    counter("synshield_connections_opened_total", "Connections admitted from validated cookies (reopens included).", |s| s.data.shard.admitted),
    counter("synshield_connections_closed_total", "Connections and TIME-WAIT records that ended, any reason.", |s| s.data.table.closed),
    counter("synshield_connections_reopened_total", "Tuples in TIME-WAIT reopened by a new handshake (RFC 6191).", |s| s.data.shard.reopened),
    counter("synshield_connections_refused_total", "New connections refused with RST because --max-conns were held.", |s| s.data.shard.refused_full),
    counter("synshield_connections_refused_per_source_total", "New connections refused with RST because their source address held --max-conns-per-source.", |s| s.data.shard.refused_per_source),
    counter("synshield_connections_admitted_late_total", "Connections admitted from a later segment because the frame of their third ACK was lost (a full AF_XDP ring).", |s| s.data.shard.admitted_late),
    counter("synshield_time_wait_entered_total", "Connections that became TIME-WAIT records.", |s| s.data.table.time_wait_entered),
    counter("synshield_time_wait_acks_total", "ACKs sent by TIME-WAIT records (a repeated FIN, an old duplicate, a replayed handshake).", |s| s.data.table.time_wait_acks),
    counter("synshield_reopen_refused_total", "Handshakes with a valid cookie for a tuple in TIME-WAIT refused as not newer than the old connection (RFC 6191).", |s| s.data.table.reopen_refused),
    counter("synshield_challenge_acks_total", "Challenge ACKs sent to a SYN, a RST or an old ACK on a synchronized connection (RFC 5961).", |s| s.data.table.totals.challenge_acks),
    counter("synshield_frames_malformed_total", "Frames from AF_XDP that were not a whole TCP segment or failed its checksum.", |s| s.data.shard.frames_malformed),
    counter("synshield_frames_forwarded_total", "Frames handed to the shard (RX queue) that owns their connection.", |s| s.data.shard.frames_forwarded),
    counter("synshield_frames_forward_dropped_total", "Frames for another shard dropped because its inbox was full.", |s| s.data.shard.forward_dropped),
    counter("synshield_not_validated_total", "Segments that reached no connection (answered with RST unless they were one).", |s| s.data.table.no_connection),
    counter("synshield_flow_orphans_removed_total", "XDP flow-map entries found without a connection, and removed.", |s| s.data.shard.orphans_removed),
    counter("synshield_flow_map_errors_total", "XDP flow-map updates the kernel refused.", |s| s.data.shard.map_errors),
    counter("synshield_payload_copied_bytes_total", "Payload bytes the data path copied (into receive buffers, between buffers, into frames).", |s| s.data.table.totals.bytes_copied),
    labeled("synshield_queue_frames_received_total", Kind::Counter, "Frames each RX queue's shard received from its AF_XDP socket (forwarded ones included).", |s, out| {
        for q in s.queues {
            out(&[("queue", &q.queue.to_string())], q.shard.frames_in);
        }
    }),
    labeled("synshield_queue_connections_opened_total", Kind::Counter, "Connections each RX queue's shard admitted.", |s, out| {
        for q in s.queues {
            out(&[("queue", &q.queue.to_string())], q.shard.admitted);
        }
    }),
    counter("synshield_rx_ring_full_total", "Frames the kernel dropped because an AF_XDP RX ring was full.", |s| s.data.rx_ring_full),
    counter("synshield_rx_dropped_total", "Frames the kernel dropped because an AF_XDP socket's fill ring had no free frame for them.", |s| s.data.rx_dropped),
];

/// Renders every metric of [`METRICS`] in the Prometheus text format (version 0.0.4).
pub fn render(sources: &Sources) -> String {
    let mut out = String::new();
    for m in METRICS {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", m.name, m.help, m.name, m.kind.name());
        match m.value {
            Value::One(f) => {
                let _ = writeln!(out, "{} {}", m.name, f(sources));
            }
            Value::Labeled(f) => f(sources, &mut |labels, value| {
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = writeln!(out, "{}{{{}}} {value}", m.name, labels.join(","));
            }),
        }
    }
    out
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// How the metrics server bounds its clients: an idle or slow client cannot pin more than
/// one slot, for longer than the request timeout.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Clients served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A client must send its request and take the whole response within this time.
    pub request_timeout: std::time::Duration,
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits { max_connections: 32, request_timeout: std::time::Duration::from_secs(5) }
    }
}

/// Serves `GET /metrics` on `listener` with what `source` renders, until the task is
/// dropped. The caller binds, so a taken address is an error at startup. Accept errors that
/// pass (no file descriptor or memory left for a moment) are waited out, not fatal; any other
/// ends the server with the error (the caller restarts it on the same listener).
pub async fn serve<F>(
    listener: Arc<tokio::net::TcpListener>,
    source: Arc<F>,
    limits: ServeLimits,
) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A free slot before accepting: beyond the limit, clients wait in the backlog.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return Ok(()) };
        let mut s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "metrics: cannot accept now, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let answer = async {
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).await.unwrap_or(0);
                let ok = req[..n].starts_with(b"GET /metrics ") || req[..n].starts_with(b"GET / ");
                let (status, body) = if ok {
                    ("200 OK", source())
                } else {
                    ("404 Not Found", "not found\n".to_owned())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
                let _ = s.shutdown().await;
            };
            let _ = tokio::time::timeout(limits.request_timeout, answer).await;
            drop(permit);
        });
    }
}

/// Accept errors that say "not now" (descriptors, memory, a connection aborted before it was
/// accepted) rather than "never".
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    ) || e.kind() == std::io::ErrorKind::Interrupted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_text() -> String {
        let mut xdp = CounterSnapshot::default();
        xdp.set(Counter::RxFrames, 10);
        xdp.set(Counter::TxSynAck, 7);
        let mut data = QueueStats::default();
        data.table.by_state[State::Established.index()] = 3;
        data.table.totals.retransmits = 2;
        let info = Info {
            iface: "eth\"0".into(),
            xdp_mode: "native".into(),
            defense: "cookies".into(),
            start_time_seconds: 1_700_000_000,
        };
        let mut q1 = QueueStats { queue: 1, ..QueueStats::default() };
        q1.shard.admitted = 4;
        let queues = [QueueStats::default(), q1];
        let defense = tcp_common::adaptive::SynDefense {
            cpus_on_cookies: 1,
            cpus: 2,
            to_cookies: 3,
            to_stateful: 2,
        };
        render(&Sources { xdp: &xdp, data: &data, queues: &queues, defense: &defense, info: &info })
    }

    #[test]
    fn every_family_is_typed_and_values_appear() {
        let text = sample_text();
        assert!(text.contains("synshield_xdp_rx_frames_total 10\n"));
        assert!(text.contains("synshield_xdp_frames_total{verdict=\"tx_synack\"} 7\n"));
        assert!(text.contains("synshield_connections{state=\"ESTABLISHED\"} 3\n"), "{text}");
        assert!(text.contains("synshield_retransmissions_total 2\n"));
        assert!(text.contains("synshield_start_time_seconds 1700000000\n"));
        assert!(text.contains("synshield_queue_connections_opened_total{queue=\"0\"} 0\n"));
        assert!(text.contains("synshield_queue_connections_opened_total{queue=\"1\"} 4\n"));
        assert!(text.contains("synshield_syn_defense_cookie_cpus 1\n"));
        assert!(text.contains("synshield_syn_defense_switches_total{to=\"cookies\"} 3\n"));
        assert!(
            text.contains("iface=\"eth\\\"0\",xdp_mode=\"native\",defense=\"cookies\"} 1\n"),
            "{text}"
        );
        // Every sample line belongs to a family declared by a TYPE line before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| d == name), "undeclared {name}");
            }
        }
        assert_eq!(declared.len(), METRICS.len());
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for (i, m) in METRICS.iter().enumerate() {
            let n = m.name;
            assert!(n.starts_with("synshield_"), "{n}: not in the synshield_ namespace");
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n}"
            );
            assert_eq!(
                m.kind == Kind::Counter,
                n.ends_with("_total"),
                "{n}: _total is for counters, and only them"
            );
            let base = n.strip_suffix("_total").unwrap_or(n);
            for unit in ["bytes", "seconds"] {
                if n.contains(unit) {
                    assert!(
                        base.ends_with(&format!("_{unit}")),
                        "{n}: the unit {unit} goes last (before _total)"
                    );
                }
            }
            for word in ["milliseconds", "kilobytes", "_count", "_sum", "_bucket"] {
                assert!(!n.contains(word), "{n}: base units only, no reserved suffixes");
            }
            assert!(METRICS[..i].iter().all(|o| o.name != n), "{n} twice");
            assert!(m.help.ends_with('.') && !m.help.contains('\n'), "{n}: help is one sentence");
        }
    }

    /// docs/metrics.md documents every metric and every label value, and nothing else.
    #[test]
    fn docs_list_every_metric() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
                .unwrap();
        for m in METRICS {
            assert!(
                doc.contains(&format!("| `{}` |", m.name)),
                "docs/metrics.md lacks a row for {}",
                m.name
            );
        }
        for c in Counter::ALL.iter().filter(|c| **c != Counter::RxFrames) {
            assert!(
                doc.contains(&format!("`{}`", c.name())),
                "docs/metrics.md lacks the verdict {}",
                c.name()
            );
        }
        for row in doc.lines().filter_map(|l| l.strip_prefix("| `synshield_")) {
            let name = format!("synshield_{}", row.split('`').next().unwrap());
            assert!(
                METRICS.iter().any(|m| m.name == name),
                "docs/metrics.md documents {name}, which is not exported"
            );
        }
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source = Arc::new(|| "x 1\n".to_owned());
        let task = tokio::spawn(serve(Arc::new(listener), source, ServeLimits::default()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"));
        assert!(out.ends_with("\r\n\r\nx 1\n"));
        task.abort();
    }

    #[tokio::test]
    async fn idle_clients_cannot_pin_the_metrics_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits {
            max_connections: 4,
            request_timeout: std::time::Duration::from_millis(300),
        };
        let task = tokio::spawn(serve(Arc::new(listener), Arc::new(|| "x 1\n".to_owned()), limits));
        // Ten clients connect and say nothing: four hold the slots, six wait in the backlog.
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // A real scrape is still answered: the idle ones time out and give their slots up.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_string(&mut out));
        read.await.expect("answered despite idle clients").unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        // And the idle clients were closed by the server, not left open.
        for mut c in idle {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut b));
            assert_eq!(n.await.expect("closed by the server").unwrap_or(0), 0);
        }
        task.abort();
    }
}
