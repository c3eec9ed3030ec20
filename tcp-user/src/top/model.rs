//! What `top` shows, computed from successive scrapes of the metrics page: no terminal here,
//! so it is tested as plain data.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The samples of one scrape of `/metrics`, keyed by the sample as printed (`name` or
/// `name{label="value",...}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// Parses the Prometheus text format (the subset synshield writes: no timestamps).
    #[must_use]
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// One sample's value; 0 when absent (a metric another version does not export).
    #[must_use]
    pub fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// A label's value on the first sample of `name` (for `synshield_info`).
    #[must_use]
    pub fn label(&self, name: &str, label: &str) -> Option<String> {
        let prefix = format!("{name}{{");
        let key = self.samples.keys().find(|k| k.starts_with(&prefix))?;
        let needle = format!("{label}=\"");
        let rest = &key[key.find(&needle)? + needle.len()..];
        Some(rest[..rest.find('"')?].to_owned())
    }

    /// Samples of `name` by the value of their one label, e.g. connections by state.
    #[must_use]
    pub fn by_label(&self, name: &str) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{");
        let mut out: Vec<(String, f64)> = self
            .samples
            .iter()
            .filter_map(|(k, v)| {
                let inner = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((inner.split_once("=\"")?.1.to_owned(), *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn verdict(v: &str) -> String {
    format!("synshield_xdp_frames_total{{verdict=\"{v}\"}}")
}

/// A line of the handshake and traffic table: a name and how its counter is read.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Shown on the left.
    pub label: &'static str,
    /// Bytes (shown as B/s) rather than a count.
    pub bytes: bool,
    read: fn(&Scrape) -> f64,
}

/// The table's rows, top to bottom.
pub const ROWS: &[Row] = &[
    Row {
        label: "SYN received",
        bytes: false,
        read: |s| {
            s.get(&verdict("tx_synack"))
                + s.get(&verdict("redirect_syn"))
                + s.get(&verdict("redirect_syn_known_flow"))
                + s.get(&verdict("drop_syn_half_open_full"))
                + s.get(&verdict("drop_syn_with_payload"))
                + s.get(&verdict("drop_syn_bad_flags"))
        },
    },
    Row { label: "SYN-ACK sent (cookie)", bytes: false, read: |s| s.get(&verdict("tx_synack")) },
    Row {
        label: "SYN-ACK sent (state)",
        bytes: false,
        read: |s| s.get("synshield_half_open_opened_total"),
    },
    Row { label: "third ACK, valid", bytes: false, read: |s| s.get(&verdict("redirect_new_flow")) },
    Row {
        label: "ACK invalid/forged",
        bytes: false,
        read: |s| s.get(&verdict("drop_ack_invalid")),
    },
    Row {
        label: "stray RST/non-ACK",
        bytes: false,
        read: |s| s.get(&verdict("drop_rst_unknown")) + s.get(&verdict("drop_no_ack_unknown")),
    },
    Row {
        label: "bytes in",
        bytes: true,
        read: |s| s.get("synshield_payload_received_bytes_total"),
    },
    Row { label: "bytes out", bytes: true, read: |s| s.get("synshield_payload_sent_bytes_total") },
    Row {
        label: "retransmissions",
        bytes: false,
        read: |s| s.get("synshield_retransmissions_total"),
    },
    Row {
        label: "connections opened",
        bytes: false,
        read: |s| s.get("synshield_connections_opened_total"),
    },
];

/// The last minute of scrapes, one a second.
#[derive(Debug, Default)]
pub struct History {
    scrapes: VecDeque<(Instant, Scrape)>,
}

/// How long the sparklines look back.
pub const WINDOW: Duration = Duration::from_mins(1);

/// One row's figures for the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct RowView {
    /// The row's label.
    pub label: &'static str,
    /// Bytes rather than a count.
    pub bytes: bool,
    /// Per second over the last interval (`None` before the second scrape).
    pub rate: Option<f64>,
    /// The counter's value.
    pub total: f64,
    /// Per-second rates over the last minute, oldest first.
    pub history: Vec<f64>,
}

impl History {
    /// Adds a scrape taken at `at`, and forgets those older than the window.
    pub fn push(&mut self, at: Instant, scrape: Scrape) {
        self.scrapes.push_back((at, scrape));
        while self.scrapes.front().is_some_and(|(t, _)| at.duration_since(*t) > WINDOW) {
            self.scrapes.pop_front();
        }
    }

    /// The newest scrape.
    #[must_use]
    pub fn latest(&self) -> Option<&Scrape> {
        self.scrapes.back().map(|(_, s)| s)
    }

    /// Every row with its rate, total and last minute.
    #[must_use]
    pub fn rows(&self) -> Vec<RowView> {
        ROWS.iter()
            .map(|row| {
                let rates: Vec<f64> = self
                    .scrapes
                    .iter()
                    .zip(self.scrapes.iter().skip(1))
                    .map(|((t0, a), (t1, b))| {
                        let dt = t1.duration_since(*t0).as_secs_f64().max(1e-3);
                        // A restarted synshield starts from zero: no negative rates.
                        ((row.read)(b) - (row.read)(a)).max(0.0) / dt
                    })
                    .collect();
                RowView {
                    label: row.label,
                    bytes: row.bytes,
                    rate: rates.last().copied(),
                    total: self.latest().map_or(0.0, |s| (row.read)(s)),
                    history: rates,
                }
            })
            .collect()
    }
}

/// `1234` as `1.2k`, `5_600_000` as `5.6M`: short enough for a narrow column.
#[must_use]
pub fn human(v: f64) -> String {
    let (scaled, unit) = match v.abs() {
        x if x >= 1e9 => (v / 1e9, "G"),
        x if x >= 1e6 => (v / 1e6, "M"),
        x if x >= 1e4 => (v / 1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    format!("{scaled:.1}{unit}")
}

/// A sparkline of `values` in `width` characters (the newest at the right), scaled to the
/// largest value shown.
#[must_use]
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0, f64::max);
    let mut s: String = " ".repeat(width - shown.len());
    for v in shown {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a value in 0..=8 by construction"
        )]
        let level = if max > 0.0 { ((v / max) * 8.0).ceil().clamp(0.0, 8.0) as usize } else { 0 };
        s.push(BARS[level]);
    }
    s
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "small integers, exact in f64")]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP synshield_info x\n# TYPE synshield_info gauge\n\
        synshield_info{version=\"0.1.0\",iface=\"shield0\",xdp_mode=\"native\",defense=\"cookies\"} 1\n\
        synshield_xdp_frames_total{verdict=\"tx_synack\"} 1000\n\
        synshield_xdp_frames_total{verdict=\"redirect_new_flow\"} 10\n\
        synshield_connections{state=\"ESTABLISHED\"} 3\n\
        synshield_connections{state=\"TIME-WAIT\"} 2\n\
        synshield_payload_received_bytes_total 4096\n";

    #[test]
    fn parses_samples_labels_and_label_families() {
        let s = Scrape::parse(PAGE);
        assert_eq!(s.get("synshield_payload_received_bytes_total"), 4096.0);
        assert_eq!(s.get(&verdict("tx_synack")), 1000.0);
        assert_eq!(s.get("absent"), 0.0);
        assert_eq!(s.label("synshield_info", "xdp_mode").as_deref(), Some("native"));
        assert_eq!(s.label("synshield_info", "defense").as_deref(), Some("cookies"));
        assert_eq!(
            s.by_label("synshield_connections"),
            [("ESTABLISHED".to_owned(), 3.0), ("TIME-WAIT".to_owned(), 2.0)]
        );
    }

    #[test]
    fn rates_come_from_successive_scrapes_and_old_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push(t0, Scrape::parse(PAGE));
        assert_eq!(h.rows()[1].rate, None, "one scrape has no rate");
        let later = PAGE.replace("\"tx_synack\"} 1000", "\"tx_synack\"} 3000");
        h.push(t0 + Duration::from_secs(2), Scrape::parse(&later));
        let synack = &h.rows()[1];
        assert_eq!(
            (synack.label, synack.rate, synack.total),
            ("SYN-ACK sent (cookie)", Some(1000.0), 3000.0)
        );
        // A restart (counters back to zero) is not a negative rate.
        h.push(t0 + Duration::from_secs(3), Scrape::parse(""));
        assert_eq!(h.rows()[1].rate, Some(0.0));
        h.push(t0 + Duration::from_secs(100), Scrape::parse(PAGE));
        assert_eq!(
            h.rows()[1].history.len(),
            0,
            "everything but the newest is older than the window"
        );
    }

    #[test]
    fn sparkline_scales_to_the_largest_value_and_keeps_the_newest() {
        assert_eq!(sparkline(&[0.0, 4.0, 8.0], 5), "   ▄█");
        assert_eq!(sparkline(&[8.0, 0.0, 1.0, 2.0], 2), "▄█");
        assert_eq!(sparkline(&[], 3), "   ");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(123_456.0), "123.5k");
        assert_eq!(human(5_600_000.0), "5.6M");
    }
}
