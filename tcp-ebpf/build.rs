//! Link flags for the XDP object.
//!
//! `--disable-expand-memcpy-in-order`: bpf-linker by default passes LLVM
//! `-bpf-expand-memcpy-in-order`, which sets the BPF backend's inline-store limits for memset
//! and memmove to zero, so every zeroing or overlapping copy the compiler forms (a 12-byte
//! `TcpOptions::default()`, a MAC-address swap) became a call to a byte-at-a-time `memset` or
//! `memmove` subprogram: 17% of the SYN path's time in a profile. Without it, LLVM expands
//! small constant-size copies into word loads and stores.
fn main() {
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
