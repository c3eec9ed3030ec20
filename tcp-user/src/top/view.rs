//! The screen of `top`, drawn with ratatui from a [`History`].

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table};

use super::model::{History, human, sparkline};

/// What the screen says besides the figures.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Where the metrics come from.
    pub source: String,
    /// The last scrape's error, if it failed.
    pub error: Option<String>,
    /// Seconds since synshield started (from `synshield_start_time_seconds`).
    pub uptime: Option<u64>,
    /// Lines shown under the figures.
    pub notes: Vec<String>,
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, history: &History, status: &Status) {
    let latest = history.latest();
    let info =
        |l: &str| latest.and_then(|s| s.label("synshield_info", l)).unwrap_or_else(|| "?".into());
    let on_cookies = latest.map_or(0.0, |s| s.get("synshield_syn_defense_cookie_cpus"));
    let defense = match info("defense").as_str() {
        "cookies" => "SYN cookies for every SYN".to_owned(),
        "stateful" => "stateful handshakes".to_owned(),
        "adaptive" if on_cookies > 0.0 => "adaptive: SYN flood, cookies".to_owned(),
        "adaptive" => "adaptive: stateful handshakes".to_owned(),
        other => other.to_owned(),
    };
    let uptime = status.uptime.map_or_else(String::new, |s| {
        format!(" · up {}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    });
    let title = format!(
        " synshield on {} ({} XDP) · mode: {defense}{uptime} ",
        info("iface"),
        info("xdp_mode")
    );

    let notes_height = if status.notes.is_empty() {
        0
    } else {
        u16::try_from(status.notes.len()).unwrap_or(u16::MAX).saturating_add(2)
    };
    let [header, table_area, conns_area, notes_area, _, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::try_from(super::model::ROWS.len()).unwrap_or(u16::MAX) + 3),
        Constraint::Length(4),
        Constraint::Length(notes_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(title).style(Style::new().add_modifier(Modifier::REVERSED)),
        header,
    );

    let rows = history.rows();
    let spark_width = usize::from(table_area.width.saturating_sub(22 + 10 + 10 + 2 + 3)).max(1);
    let table_rows = rows.iter().map(|r| {
        let unit = if r.bytes { "B/s" } else { "/s" };
        let rate = r.rate.map_or_else(|| "-".into(), |v| format!("{}{unit}", human(v)));
        TableRow::new(vec![
            r.label.to_owned(),
            format!("{rate:>10}"),
            format!("{:>10}", human(r.total)),
            sparkline(&r.history, spark_width),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(22),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Fill(1),
        ],
    )
    .header(
        TableRow::new(vec![
            String::new(),
            format!("{:>10}", "now"),
            format!("{:>10}", "total"),
            "last minute".into(),
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::new().borders(Borders::ALL).title(" handshakes and traffic "));
    frame.render_widget(table, table_area);

    let conns = latest.map(|s| s.by_label("synshield_connections")).unwrap_or_default();
    let open: f64 = conns.iter().map(|(_, v)| v).sum();
    let mut spans = vec![Span::styled(
        format!("{} open", human(open)),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for (state, v) in conns.iter().filter(|(_, v)| *v > 0.0) {
        spans.push(Span::raw(format!(" · {state} {}", human(*v))));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans))
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::new().borders(Borders::ALL).title(" connections by state ")),
        conns_area,
    );

    if !status.notes.is_empty() {
        let lines: Vec<Line> = status.notes.iter().map(|n| Line::raw(n.as_str())).collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" try ")),
            notes_area,
        );
    }
    let foot = match &status.error {
        Some(e) => format!(" cannot read {}: {e} (retrying) · q quits", status.source),
        None => format!(" {} every second · q quits", status.source),
    };
    frame.render_widget(Paragraph::new(foot), footer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::Scrape;
    use ratatui::{Terminal, backend::TestBackend};
    use std::time::{Duration, Instant};

    fn screen(width: u16, height: u16, history: &History, status: &Status) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, history, status)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_screen_shows_mode_rates_totals_states_and_sparklines() {
        let page = |synacks: u64| {
            format!(
                "synshield_info{{version=\"0.1.0\",iface=\"shield0\",xdp_mode=\"native\",defense=\"cookies\"}} 1\n\
                 synshield_xdp_frames_total{{verdict=\"tx_synack\"}} {synacks}\n\
                 synshield_connections{{state=\"ESTABLISHED\"}} 3\n\
                 synshield_connections{{state=\"TIME-WAIT\"}} 0\n"
            )
        };
        let t0 = Instant::now();
        let mut h = History::default();
        for (i, n) in [0, 1000, 51_000, 151_000].into_iter().enumerate() {
            h.push(t0 + Duration::from_secs(i as u64), Scrape::parse(&page(n)));
        }
        let status = Status {
            source: "http://127.0.0.1:9100/metrics".into(),
            error: None,
            uptime: Some(3725),
            notes: vec!["ip netns exec lab-c nc 198.18.0.2 7".into()],
        };
        let text = screen(100, 20, &h, &status);
        assert!(
            text.contains(
                "synshield on shield0 (native XDP) · mode: SYN cookies for every SYN · up 1h02m05s"
            ),
            "{text}"
        );
        let synack = text.lines().find(|l| l.contains("SYN-ACK sent (cookie)")).unwrap();
        assert!(synack.contains("100.0k/s") && synack.contains("151.0k"), "{synack}");
        assert!(synack.contains("▁▄█"), "sparkline of 1k, 50k, 100k: {synack}");
        assert!(text.contains("3 open · ESTABLISHED 3"), "{text}");
        assert!(!text.contains("TIME-WAIT 0"), "zero states are left out: {text}");
        assert!(text.contains("q quits"));
        assert!(text.contains("│ip netns exec lab-c nc 198.18.0.2 7"), "{text}");
        // No line is wider than the terminal, even a narrow one.
        let narrow =
            screen(40, 20, &h, &Status { error: Some("connection refused".into()), ..status });
        assert!(narrow.lines().all(|l| l.chars().count() == 40));
        assert!(narrow.contains("cannot read"), "{narrow}");
    }
}
