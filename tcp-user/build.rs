//! Embeds the XDP object built by `cargo xtask build` into the `synshield` binary.
//!
//! The object is built for `bpfel-unknown-none` by a different toolchain (Debian's rustc-web),
//! so cargo cannot build it as a dependency; xtask builds it first and passes its path in
//! `SYNSHIELD_EBPF_OBJECT`. Without it (a plain `cargo build` or `cargo test`), an empty object
//! is embedded and the loader says how to build the real one: the pure tests still run.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=SYNSHIELD_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let src = env::var_os("SYNSHIELD_EBPF_OBJECT").map_or_else(
        || manifest.join("../target/bpf/bpfel-unknown-none/release/tcp-ebpf"),
        PathBuf::from,
    );
    println!("cargo:rerun-if-changed={}", src.display());
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets this")).join("synshield.bpf.o");
    let bytes = fs::read(&src).unwrap_or_else(|_| {
        println!(
            "cargo:warning=XDP object {} not found: building synshield without it (run `cargo xtask build`)",
            src.display()
        );
        Vec::new()
    });
    fs::write(&out, bytes).expect("OUT_DIR is writable");
}
