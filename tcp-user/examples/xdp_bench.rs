//! `cargo xtask bench` (as root): the XDP program's cost per SYN under BPF_PROG_TEST_RUN,
//! printed as Markdown. `XDP_BENCH_REPEAT` overrides the runs per measurement;
//! `XDP_BENCH_BASELINE=path/to/another/object` adds that build's program to the same rounds
//! (before/after a change).

use std::process::ExitCode;

use tcp_user::bench;
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
