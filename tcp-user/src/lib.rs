//! synshield userspace: the XDP loader and the addresses it follows, the AF_XDP data path with
//! its connection shards and applications, the service (`serve`), its metrics, `top` and
//! `check`, and the lab used by tests, benchmarks and `cargo xtask run` (with its link
//! impairments, `impair`).

pub mod addresses;
pub mod app;
pub mod bench;
pub mod check;
pub mod cli;
pub mod config_file;
pub mod datapath;
pub mod impair;
pub mod keyfile;
pub mod lab;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod privileges;
pub mod secrets;
pub mod service;
pub mod stats;
pub mod top;
pub mod xsk;
