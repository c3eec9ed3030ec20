//! `cargo xtask bench` (as root): the XDP program's cost per SYN under BPF_PROG_TEST_RUN,
//! printed as Markdown. `XDP_BENCH_REPEAT` overrides the runs per measurement.

use std::process::ExitCode;

use tcp_user::bench;
use tcp_user::loader::XDP_OBJECT;

fn main() -> ExitCode {
    let repeat = std::env::var("XDP_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(bench::DEFAULT_REPEAT);
    match bench::run(XDP_OBJECT, repeat, bench::ROUNDS) {
        Ok(rows) => {
            print!("{}", bench::markdown(&rows, repeat, bench::ROUNDS));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdp_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
