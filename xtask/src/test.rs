//! `cargo xtask test`: what CI runs.

use anyhow::{Context as _, Result};

use crate::build::{build, host_cargo};
use crate::{run_cmd, setup::setup};

/// Setup, build, lint, docs, pure tests, root tests.
pub fn test() -> Result<()> {
    setup()?;
    build()?;
    step("format check");
    run_cmd(host_cargo().args(["fmt", "--all", "--check"]))
        .context("`cargo fmt` would change files: run `cargo fmt --all`")?;
    step("clippy");
    // With the root tests' feature, so their files (cfg'd out otherwise) are linted too.
    run_cmd(host_cargo().args([
        "clippy",
        "--all-targets",
        "--features",
        "tcp-user/root-tests",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("docs (broken links are errors)");
    run_cmd(
        host_cargo()
            .args(["doc", "--workspace", "--no-deps", "--exclude", "tcp-ebpf"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    step("pure tests (no root needed)");
    run_cmd(host_cargo().args(["test"]))?;
    step("root tests in the lab (XDP programs, namespaces, the real Linux TCP stack)");
    run_cmd(host_cargo().args([
        "test",
        "--package",
        "tcp-user",
        "--features",
        "root-tests",
        "--test",
        "*",
    ]))?;
    Ok(())
}

fn step(what: &str) {
    println!("\n==> xtask test: {what}");
}
