//! `cargo xtask build`: the XDP object (Debian's rustc-web for bpfel-unknown-none) and then
//! the synshield binary with the object embedded.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{root, run_cmd};

/// What a build produced.
pub struct Built {
    /// The release `synshield` binary.
    pub synshield: PathBuf,
}

/// Environment for every host cargo command: where the XDP object is, for tcp-user's build.rs.
pub fn object_path() -> PathBuf {
    root().join("target/bpf/bpfel-unknown-none/release/tcp-ebpf")
}

/// Builds the XDP object only.
pub fn build_ebpf() -> Result<PathBuf> {
    let root = root();
    let mut cmd = Command::new("/usr/bin/cargo");
    // The outer cargo (rustup's) exports variables that must not leak into Debian's cargo.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(&root)
        .env("RUSTC", "/usr/bin/rustc")
        // aya-ebpf uses #![feature(asm_experimental_arch)] on bpf; allow it for that crate only.
        .env("RUSTC_BOOTSTRAP", "aya_ebpf")
        .env("CARGO_TARGET_DIR", root.join("target/bpf"))
        // BTF is needed by aya-log and by bpf_loop; debuginfo feeds it.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\u{1f}-Clink-arg=--btf")
        .args(["build", "--package", "tcp-ebpf", "--target", "bpfel-unknown-none", "--release"]);
    run_cmd(&mut cmd).context(
        "building the XDP program failed (run `cargo xtask setup` if the toolchain is missing)",
    )?;
    Ok(object_path())
}

/// Builds the XDP object and the release binary.
pub fn build() -> Result<Built> {
    build_ebpf()?;
    let mut cmd = host_cargo();
    cmd.args(["build", "--release", "--package", "tcp-user", "--bin", "synshield"]);
    run_cmd(&mut cmd).context("building synshield failed")?;
    Ok(Built { synshield: root().join("target/release/synshield") })
}

/// A host cargo command with the XDP object's path exported for tcp-user's build script.
pub fn host_cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).env("SYNSHIELD_EBPF_OBJECT", object_path());
    cmd
}
