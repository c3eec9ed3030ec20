//! synshield userspace: the XDP loader, the counters, the lab used by tests and `cargo xtask
//! run` (with its link impairments, `impair`), and (to come) the AF_XDP data path,
//! connection manager and applications.

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
