//! Prometheus text exposition of the XDP counters and the data path's counters, served at
//! `/metrics` by `synshield serve --metrics ADDR:PORT`.

use std::fmt::Write as _;
use std::sync::Arc;

use tcp_common::Counter;
use tcp_engine::State;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::datapath::run::QueueStats;
use crate::stats::CounterSnapshot;

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(xdp: &CounterSnapshot, data: &QueueStats) -> String {
    let mut out = String::new();
    family(&mut out, "synshield_xdp_rx_frames_total", "counter", "Frames the XDP program saw.");
    let _ = writeln!(out, "synshield_xdp_rx_frames_total {}", xdp.get(Counter::RxFrames));
    family(
        &mut out,
        "synshield_xdp_frames_total",
        "counter",
        "Frames by the XDP program's verdict (pass_*, drop_*, tx_*, redirect_*).",
    );
    for &c in Counter::ALL.iter().filter(|c| **c != Counter::RxFrames) {
        let _ =
            writeln!(out, "synshield_xdp_frames_total{{verdict=\"{}\"}} {}", c.name(), xdp.get(c));
    }
    family(&mut out, "synshield_connections", "gauge", "Connections in the engine, by TCP state.");
    for state in State::ALL {
        let _ = writeln!(
            out,
            "synshield_connections{{state=\"{state}\"}} {}",
            data.table.by_state[state.index()]
        );
    }
    let t = &data.table.totals;
    let m = &data.manager;
    for (name, help, value) in [
        ("synshield_bytes_received_total", "Payload bytes received in order.", t.bytes_in),
        (
            "synshield_bytes_sent_total",
            "Payload bytes sent, retransmissions included.",
            t.bytes_out,
        ),
        (
            "synshield_segments_received_total",
            "TCP segments received by the engine.",
            t.segments_in,
        ),
        ("synshield_segments_sent_total", "TCP segments sent by the engine.", t.segments_out),
        ("synshield_retransmissions_total", "Segments retransmitted.", t.retransmits),
        ("synshield_retransmission_timeouts_total", "Retransmission timer expiries.", t.timeouts),
        (
            "synshield_connections_opened_total",
            "Connections admitted from validated cookies.",
            m.admitted,
        ),
        ("synshield_connections_closed_total", "Connections that ended, any reason.", m.closed),
        (
            "synshield_connections_reopened_total",
            "Tuples in TIME-WAIT reopened by a new handshake's validated cookie.",
            m.reopened,
        ),
        (
            "synshield_accept_overflow_total",
            "Connections reset because the application did not accept them.",
            m.accept_overflow,
        ),
        (
            "synshield_frames_malformed_total",
            "Frames from AF_XDP that were not a well-formed TCP segment.",
            m.frames_malformed,
        ),
        (
            "synshield_not_validated_total",
            "Segments for tuples the XDP program never validated.",
            m.not_validated,
        ),
        (
            "synshield_rx_ring_full_total",
            "Frames the kernel dropped because an AF_XDP RX ring was full.",
            data.rx_ring_full,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Serves `GET /metrics` on `listener` with what `source` renders, until the task is
/// dropped. The caller binds, so a taken address is an error at startup.
pub async fn serve<F>(listener: tokio::net::TcpListener, source: Arc<F>) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    loop {
        let (mut s, _) = listener.accept().await?;
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).await.unwrap_or(0);
            let ok = req[..n].starts_with(b"GET /metrics ") || req[..n].starts_with(b"GET / ");
            let (status, body) =
                if ok { ("200 OK", source()) } else { ("404 Not Found", "not found\n".to_owned()) };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_typed_and_values_appear() {
        let mut xdp = CounterSnapshot::default();
        xdp.set(Counter::RxFrames, 10);
        xdp.set(Counter::TxSynAck, 7);
        let mut data = QueueStats::default();
        data.table.by_state[State::Established.index()] = 3;
        data.table.totals.retransmits = 2;
        let text = render(&xdp, &data);
        assert!(text.contains("synshield_xdp_rx_frames_total 10\n"));
        assert!(text.contains("synshield_xdp_frames_total{verdict=\"tx_synack\"} 7\n"));
        assert!(text.contains("synshield_connections{state=\"ESTABLISHED\"} 3\n"), "{text}");
        assert!(text.contains("synshield_retransmissions_total 2\n"));
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
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Arc::new(|| "x 1\n".to_owned())));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"));
        assert!(out.ends_with("\r\n\r\nx 1\n"));
        task.abort();
    }
}
