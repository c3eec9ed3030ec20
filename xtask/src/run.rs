//! `cargo xtask run`: the lab demo, or synshield on a real host.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::build::build;
use crate::lab::{CLIENT_V4, CLIENT_V6, Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};
use crate::setup::setup;

/// A SIGINT handler that does nothing.
extern "C" fn ignore(_: libc::c_int) {}

/// The port the lab demo protects.
const DEMO_PORT: u16 = 7;
/// Where the lab demo serves its metrics (inside the shield namespace).
const METRICS: &str = "127.0.0.1:9100";

pub fn run(args: &[String]) -> Result<()> {
    setup()?;
    let built = build()?;
    if !args.is_empty() {
        // A real host: the user's arguments, `serve` implied when they start with an option.
        let mut cmd = Command::new(&built.synshield);
        if args[0].starts_with('-') {
            cmd.arg("serve");
        }
        cmd.args(args);
        let err = std::os::unix::process::CommandExt::exec(&mut cmd);
        bail!("cannot start {}: {err}", built.synshield.display());
    }

    let lab = Lab::with_options(&LabOptions {
        client_xdp_pass: true,
        fixed_prefix: Some("synshield-lab".into()),
        ..LabOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("building the lab failed: {e}"))?;
    let c = lab.client.name().to_owned();
    println!(
        "\nThe lab is up:\n\
         \x20 client  netns {c:<18} {CLIENT_V4}  {CLIENT_V6}\n\
         \x20 shield  netns {:<18} {SHIELD_V4}  {SHIELD_V6}  (synshield on {SHIELD_IF}, port {DEMO_PORT})\n\n\
         From another terminal:\n\
         \x20 ip netns exec {c} nc {SHIELD_V4} {DEMO_PORT}          # type a line: the echo answers\n\
         \x20 ip netns exec {c} nc {SHIELD_V6} {DEMO_PORT}\n\
         \x20 ip netns exec {c} hping3 -S -p {DEMO_PORT} -c 100000 --flood {SHIELD_V4}   # a bounded SYN flood\n\
         \x20 ip netns exec {s} curl -s http://{METRICS}/metrics     # Prometheus metrics\n\n\
         Counters follow every second; Ctrl-C stops synshield and removes the lab.\n",
        lab.shield.name(),
        s = lab.shield.name(),
    );
    // Ctrl-C reaches synshield (same terminal process group); xtask waits for it to detach
    // and exit, then removes the lab. A handler rather than SIG_IGN, which exec would inherit.
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t) };
    let status = lab
        .shield
        .command(built.synshield.to_str().context("non-UTF-8 path")?)
        .args(["serve", "--iface", SHIELD_IF, "--port", &DEMO_PORT.to_string(), "--app", "echo"])
        .args(["--metrics", METRICS])
        .status()
        .context("starting synshield in the shield namespace")?;
    drop(lab);
    println!("xtask: lab removed");
    if !status.success() && status.code() != Some(130) {
        bail!("synshield exited with {status}");
    }
    Ok(())
}
