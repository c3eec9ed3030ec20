//! The engine and the XDP program under BPF_PROG_TEST_RUN: examples that print Markdown.

use super::*;

pub(super) fn engine_section() -> Result<String> {
    let mut cmd = host_cargo();
    cmd.args(["run", "--release", "--package", "tcp-engine", "--example", "engine_bench"]);
    example_output(&mut cmd, "TCP engine (tcp-engine)")
}

/// STEP FOR THE XDP PROGRAM'S OWNER: `tcp-user/examples/xdp_bench.rs` (not written here) prints,
/// as Markdown, ns per SYN under BPF_PROG_TEST_RUN for synshield's program, an XDP_DROP program
/// and a variant built on the kernel helper `bpf_tcp_raw_gen_syncookie_ipv4`. This step runs it
/// once the file exists.
pub(super) fn xdp_test_run_section() -> Result<String> {
    pub(super) const TITLE: &str = "XDP program per SYN (BPF_PROG_TEST_RUN)";
    if !root().join("tcp-user/examples/xdp_bench.rs").exists() {
        println!("xtask bench: tcp-user/examples/xdp_bench.rs does not exist yet");
        return Ok(format!("## {TITLE}\n\n(not available yet)\n\n"));
    }
    let mut cmd = host_cargo();
    // host_cargo exports the XDP object's path, so the example embeds the program just built.
    cmd.args(["run", "--release", "--package", "tcp-user", "--example", "xdp_bench"]);
    example_output(&mut cmd, TITLE)
}

/// Runs an example (cargo's progress on the terminal) and returns its standard output as a
/// Markdown section, headed with `title` unless the example wrote its own heading.
pub(super) fn example_output(cmd: &mut Command, title: &str) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{shown} failed ({}); its output: {text}", out.status);
    let text = text.trim();
    let mut s = if text.starts_with('#') { String::new() } else { format!("## {title}\n\n") };
    s.push_str(text);
    s.push_str("\n\n");
    Ok(s)
}
