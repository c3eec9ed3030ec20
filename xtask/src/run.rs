//! `cargo xtask run`: the lab demo, or synshield on a real host.

use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::build::build;
use crate::lab::{CLIENT_V4, CLIENT_V6, Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};
use crate::setup::setup;

/// A SIGINT or SIGHUP handler that does nothing.
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
         From another terminal (the README's commands):\n\
         \x20 echo hello | ip netns exec {c} nc -N {SHIELD_V4} {DEMO_PORT}      # prints hello: the echo answers\n\
         \x20 echo hello | ip netns exec {c} nc -N {SHIELD_V6} {DEMO_PORT}\n\
         \x20 ip netns exec {c} timeout 5 hping3 -S -p {DEMO_PORT} --flood --rand-source {SHIELD_V4}   # a 5-second SYN flood\n\
         \x20 ip netns exec {s} curl -s http://{METRICS}/metrics   # Prometheus metrics\n\n\
         {}\n",
        lab.shield.name(),
        if std::io::stdout().is_terminal() {
            "`synshield top` follows; q (or Ctrl-C) stops synshield and removes the lab."
        } else {
            "Counters follow every second; Ctrl-C stops synshield and removes the lab."
        },
        s = lab.shield.name(),
    );
    let synshield = built.synshield.to_str().context("non-UTF-8 path")?;
    let serve_args =
        ["serve", "--iface", SHIELD_IF, "--port", &DEMO_PORT.to_string(), "--app", "echo"];
    if std::io::stdout().is_terminal() {
        let notes = [
            format!(
                "ip netns exec {c} nc {SHIELD_V4} {DEMO_PORT}   # from another terminal: type a line"
            ),
            format!(
                "ip netns exec {c} timeout 5 hping3 -S -p {DEMO_PORT} --flood --rand-source {SHIELD_V4}"
            ),
        ];
        return run_with_top(&lab, synshield, &serve_args, &notes);
    }
    // Not a terminal (a pipe, a log): synshield's plain status lines, one per second.
    // Ctrl-C reaches synshield (same terminal process group); xtask waits for it to detach
    // and exit, then removes the lab. A handler rather than SIG_IGN, which exec would inherit.
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t) };
    let status = lab
        .shield
        .command(synshield)
        .args(serve_args)
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

/// On a terminal: synshield in the background (its output in a log file), `synshield top` in
/// the foreground; when top quits (q or Ctrl-C), stop synshield by its PID, then the lab.
fn run_with_top(lab: &Lab, synshield: &str, serve_args: &[&str], notes: &[String]) -> Result<()> {
    // Ctrl-C while synshield starts must not kill xtask before it cleans up; in top, the
    // terminal is raw and Ctrl-C is a key that quits top. A hang-up (the terminal closed)
    // ends top but not xtask, which then stops synshield (in its own process group, and it
    // takes SIGHUP as "reload") and removes the lab.
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t) };
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGHUP, ignore as *const () as libc::sighandler_t) };
    let log_path = std::env::temp_dir().join("synshield-lab.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut serve = lab
        .shield
        .command(synshield)
        .args(serve_args)
        .args(["--metrics", METRICS, "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .process_group(0)
        .spawn()
        .context("starting synshield in the shield namespace")?;
    let guard = ServeGuard(&mut serve);
    let stdout = guard.0.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let attached = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("synshield: attached") => break true,
            Some(Ok(line)) => seen.push(line),
            _ => break false,
        }
    };
    if !attached {
        let errors = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("synshield did not start: {}{errors}", seen.join("\n"));
    }
    // The rest of synshield's output goes to the log as well.
    let mut log_out = log;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(log_out, "{line}");
        }
    });
    let top = lab
        .shield
        .command(synshield)
        .args(["top", "--metrics", METRICS])
        .args(notes.iter().flat_map(|n| ["--note", n.as_str()]))
        .status()
        .context("starting synshield top")?;
    drop(guard);
    println!("xtask: synshield stopped (its output: {}); lab removed", log_path.display());
    if !top.success() {
        bail!("synshield top exited with {top}");
    }
    Ok(())
}

/// Stops the background synshield by its PID (SIGTERM: it closes connections and detaches)
/// and waits for it, also when xtask fails on the way.
struct ServeGuard<'a>(&'a mut std::process::Child);

impl Drop for ServeGuard<'_> {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id())
            && matches!(self.0.try_wait(), Ok(None))
        {
            // SAFETY: signalling the child we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.0.wait();
    }
}
