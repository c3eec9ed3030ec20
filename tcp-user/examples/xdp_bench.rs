//! `cargo xtask bench` (as root): the XDP program's cost per SYN under BPF_PROG_TEST_RUN,
//! printed as Markdown, in cookie mode and in adaptive mode as a flood finds it (switched to
//! cookies, every SYN still counted against the CPU's window). `XDP_BENCH_REPEAT` overrides the runs per measurement;
//! `XDP_BENCH_BASELINE=path/to/another/object` adds that build's program to the same rounds
//! (before/after a change).

use std::process::ExitCode;

use tcp_user::bench::{self, Frame, Row, Subject};
use tcp_user::loader::XDP_OBJECT;

fn main() -> ExitCode {
    let repeat = std::env::var("XDP_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(bench::DEFAULT_REPEAT);
    let baseline = match std::env::var_os("XDP_BENCH_BASELINE").map(std::fs::read).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xdp_bench: XDP_BENCH_BASELINE: {e}");
            return ExitCode::FAILURE;
        }
    };
    match bench::run(XDP_OBJECT, baseline.as_deref(), repeat, bench::ROUNDS) {
        Ok(rows) => {
            print!("{}", bench::markdown(&rows, repeat, bench::ROUNDS));
            print!("{}", adaptive_cost(&rows));
            let count = |o: &[u8]| match bench::verified_instructions(o) {
                Ok(Some(n)) => n.to_string(),
                Ok(None) => "not reported".into(),
                Err(e) => format!("unknown ({e})"),
            };
            print!("\nInstructions the verifier processed for synshield: {}", count(XDP_OBJECT));
            if let Some(b) = &baseline {
                print!(" (baseline build: {})", count(b));
            }
            println!(".");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdp_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A sentence on what adaptive mode costs per SYN under a flood, next to cookie mode as `serve`
/// runs it (TIME-WAIT marked, a flow lookup per SYN: the `Marked` row).
fn adaptive_cost(rows: &[Row]) -> String {
    let find = |s: Subject| rows.iter().find(|r| r.subject == s && r.frame == Frame::Bare);
    let (Some(adaptive), Some(cookies)) = (find(Subject::Adaptive), find(Subject::Marked)) else {
        return String::new();
    };
    let ns = |r: &Row| r.min_ns_per_syn.as_nanos();
    format!(
        "\nAdaptive mode is measured as a flood finds it: switched to cookies (a limit of zero \
         SYNs per window), so every SYN is counted against its CPU's window and answered with a \
         cookie; that is what a flood costs it. Its stateful answers in peace go to userspace \
         and are not measured here. On the bare SYN, by the minimum: adaptive {} ns, cookie \
         mode as `serve` runs it (TIME-WAIT marked) {} ns: {} ns for counting the SYN.\n",
        ns(adaptive),
        ns(cookies),
        i128::try_from(ns(adaptive)).unwrap_or(i128::MAX)
            - i128::try_from(ns(cookies)).unwrap_or(i128::MAX),
    )
}
