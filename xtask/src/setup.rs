//! `cargo xtask setup`: installs what the build and the tests need, from apt and crates.io
//! only, skipping what is already there.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{is_root, run_cmd};

/// Debian packages, and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc 1.96 with LLVM 22, used for the eBPF crate"),
    ("cargo-web", "cargo for rustc-web"),
    ("libstd-rust-web-dev-bpf", "prebuilt core for bpfel-unknown-none (no rust-src here)"),
    ("llvm-22-dev", "libLLVM 22 that bpf-linker links against"),
    ("libpolly-22-dev", "needed by llvm-22's llvm-config --libs"),
    ("libzstd-dev", "bpf-linker's LLVM link line"),
    ("zlib1g-dev", "bpf-linker's LLVM link line"),
    ("gcc", "C compiler for build scripts"),
    ("libc6-dev", "C library headers"),
    ("iproute2", "ip netns / ip link for the lab"),
    ("ethtool", "TX checksum offload off on lab veths"),
    ("bpftool", "inspecting programs and maps"),
    ("hping3", "the user's SYN flood tool"),
    ("netsniff-ng", "trafgen, the fast SYN generator for benchmarks"),
    ("nftables", "the kernel synproxy comparison"),
    ("tcpdump", "debugging lab traffic"),
    ("curl", "http end-to-end tests"),
    ("netcat-openbsd", "nc, to talk to the lab by hand"),
    ("procps", "sysctl in the lab"),
    ("iperf3", "goodput benchmarks (kernel to kernel, through the proxy)"),
    ("wrk", "HTTP connection-rate benchmark"),
    ("nginx-light", "the HTTP server synshield's connection rate is compared with"),
    ("tmux", "a terminal for the tests of `synshield top` and the status line"),
    ("systemd", "systemd-analyze verify for packaging/systemd/synshield.service"),
    ("util-linux", "setpriv: the unit's capability set in the tests"),
    ("strace", "the system calls serve makes, against the unit's filter, in the tests"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every step; prints one line per step that had work to do.
pub fn setup() -> Result<()> {
    if !is_root() {
        bail!(
            "setup installs packages and mounts bpffs, so it must run as root: run `sudo -E cargo xtask setup` (or the command you ran) as root"
        );
    }
    apt()?;
    bpf_linker()?;
    bpffs()?;
    Ok(())
}

fn apt() -> Result<()> {
    let names: Vec<&str> = APT_PACKAGES.iter().map(|(n, _)| *n).collect();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(&names)
        .output()
        .context("running dpkg-query: is this a Debian system?")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !listed.lines().any(|l| l.starts_with(&format!("{n} ii"))))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_cmd(&mut c).context(
            "apt-get failed: check that Debian's package mirrors (and bookworm-security) are reachable",
        )
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"),
        PathBuf::from,
    );
    home.join("bin").join(name)
}

fn bpf_linker() -> Result<()> {
    let have = Command::new(cargo_bin("bpf-linker"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if have {
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    // The rustup cargo builds it; LLVM_PREFIX matters because /usr/bin/llvm-config is LLVM 14.
    run_cmd(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked"])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
    .context("building bpf-linker from crates.io failed")
}

fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")) {
        return Ok(());
    }
    println!("setup: mounting bpffs on /sys/fs/bpf");
    run_cmd(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}
