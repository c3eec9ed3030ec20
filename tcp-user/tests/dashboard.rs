//! dashboards/synshield.json: every PromQL expression names at least one metric, every metric
//! it names is one synshield exports, and every label value it selects exists.

use std::collections::BTreeSet;

use serde_json::Value;
use tcp_common::Counter;
use tcp_engine::State;
use tcp_user::metrics::METRICS;

const DASHBOARD: &str = include_str!("../../dashboards/synshield.json");

/// Every PromQL string in the dashboard: panel targets and template variable queries.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The `synshield_*` identifiers in an expression.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("synshield_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

/// The values an expression selects for `label` (`label="value"`).
fn label_values<'a>(expr: &'a str, label: &str) -> Vec<&'a str> {
    let needle = format!("{label}=\"");
    expr.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &expr[at + needle.len()..];
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

#[test]
fn every_expression_names_metrics_synshield_exports() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "synshield");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let panels = dashboard["panels"].as_array().unwrap();
    let targets: usize = panels.iter().map(|p| p["targets"].as_array().map_or(0, Vec::len)).sum();
    assert!(exprs.len() > targets, "panel targets and the instance variable: {exprs:?}");

    let exported: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    let verdicts: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
    let states: BTreeSet<String> = State::ALL.iter().map(ToString::to_string).collect();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "an expression that names no synshield metric: {expr}");
        for name in names {
            assert!(exported.contains(name), "{name} is not exported by synshield (in {expr})");
            used.insert(name);
        }
        for v in label_values(expr, "verdict") {
            assert!(verdicts.contains(v), "no verdict {v:?} (in {expr})");
        }
        for s in label_values(expr, "state") {
            assert!(states.contains(s), "no state {s:?} (in {expr})");
        }
    }
    // The headline families are on the dashboard.
    for name in [
        "synshield_xdp_frames_total",
        "synshield_connections",
        "synshield_payload_received_bytes_total",
        "synshield_retransmissions_total",
        "synshield_info",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} picks its data source",
            panel["title"]
        );
    }
}

#[test]
fn the_scanner_finds_names_and_label_values() {
    let e = r#"sum(rate(synshield_xdp_frames_total{verdict="tx_synack"}[1m])) / synshield_x"#;
    assert_eq!(metric_names(e), ["synshield_xdp_frames_total", "synshield_x"]);
    assert_eq!(label_values(e, "verdict"), ["tx_synack"]);
}
