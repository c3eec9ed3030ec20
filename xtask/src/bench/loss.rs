//! Loss (issue 9): the engine's reassembly under the worst out-of-order pattern, and goodput
//! through synshield under random loss next to Linux-to-Linux under the same loss, in the
//! same run.
//!
//! - **Reassembly**: `tcp-engine`'s `engine_bench reassembly` (one receiving connection, ns
//!   per segment and peak heap, the worst pattern against in-order arrival).
//! - **Goodput under loss**: a fresh lab per loss rate, with one frame per packet on both
//!   veth ends (`impair::offloads_off`) and the lab's loss program on the client's veth
//!   dropping that share of TCP frames in both directions (`impair`, tc BPF; this kernel has
//!   no netem). A Linux client in the client namespace echoes a stream through
//!   `synshield --app echo`, then through the kernel's own echo server in the shield
//!   namespace (a thread, on the next port), over the same link with the same loss. The
//!   stream is checked on the way back. Goal: synshield at least 0.8x Linux at 1 % and 5 %.

use std::io::Write as _;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use super::examples::example_output;
use super::*;
use crate::impair::{Impaired, Impairment, offloads_off};

/// synshield's echo port; the kernel's echo listens on the next one.
const PORT: u16 = 7;
const KERNEL_PORT: u16 = 8;
/// Bytes each echo run moves each way.
const STREAM_BYTES: usize = 64 << 20;
const QUICK_STREAM_BYTES: usize = 16 << 20;
/// The loss rates measured, per thousand frames each way.
const LOSS_PERMILLE: [u16; 2] = [10, 50];
/// Goal of issue 9: goodput under loss at least this share of Linux-to-Linux.
const GOAL: f64 = 0.8;

pub(super) fn loss_section(synshield: &Path, quick: bool) -> Result<Section> {
    let interrupts = Interrupts::install()?;
    let mut text = String::from("## Loss\n\n");
    let mut incomplete = false;
    let mut cmd = host_cargo();
    cmd.args(["run", "--release", "--package", "tcp-engine", "--example", "engine_bench"]);
    cmd.args(["--", "reassembly"]);
    match example_output(&mut cmd, "Reassembly") {
        Ok(t) => text.push_str(&t),
        Err(e) => {
            eprintln!("xtask bench: reassembly failed: {e:#}");
            let _ = write!(text, "### Reassembly\n\n**Failed:** {}\n\n", brief_error(&e));
            incomplete = true;
        }
    }
    interrupts.check()?;
    let bytes = if quick { QUICK_STREAM_BYTES } else { STREAM_BYTES };
    match goodput_under_loss(synshield, bytes, &interrupts) {
        Ok(t) => text.push_str(&t),
        Err(e) if e.is::<Interrupted>() => return Err(e),
        Err(e) => {
            eprintln!("xtask bench: goodput under loss failed: {e:#}");
            let _ = write!(text, "### Goodput under loss\n\n**Failed:** {}\n\n", brief_error(&e));
            incomplete = true;
        }
    }
    Ok(Section { text, incomplete })
}

fn goodput_under_loss(synshield: &Path, bytes: usize, interrupts: &Interrupts) -> Result<String> {
    let data = stream_data(bytes);
    let mut text = String::from("### Goodput under loss\n\n");
    let _ = write!(
        text,
        "{} MiB echoed by a Linux client, through `synshield --app echo` and through the \
         kernel's echo, each way, with the share of TCP frames given dropped at random on the \
         client's veth in both directions (the lab's tc BPF loss program, `tcp-user/src/impair.rs`; \
         this kernel has no netem). One frame per packet on both ends (GSO, TSO, GRO off, \
         `gso_max_segs 1`). MB/s of the stream one way (as many bytes come back at the same \
         time). Goal (issue 9): synshield at least {GOAL}x Linux.\n\n",
        bytes >> 20
    );
    text.push_str("| loss each way | synshield | Linux to Linux | ratio | goal met |\n");
    text.push_str("|---|---|---|---|---|\n");
    for permille in LOSS_PERMILLE {
        interrupts.check()?;
        let (ours, linux) = measure(synshield, permille, &data)
            .with_context(|| format!("at {permille} per thousand"))?;
        let ratio = ours / linux;
        let _ = writeln!(
            text,
            "| {:.0} % | {ours:.1} MB/s | {linux:.1} MB/s | {ratio:.2}x | {} |",
            f64::from(permille) / 10.0,
            if ratio >= GOAL { "yes" } else { "**no**" }
        );
    }
    text.push('\n');
    Ok(text)
}

/// The stream: a pseudo-random megabyte, repeated (cheap to check on the way back).
fn stream_data(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let block: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    block.iter().copied().cycle().take(bytes).collect()
}

/// One lab at `permille` loss: MB/s through synshield, then through the kernel.
fn measure(synshield: &Path, permille: u16, data: &[u8]) -> Result<(f64, f64)> {
    let lab = Lab::with_options(&LabOptions { client_xdp_pass: true, ..LabOptions::default() })
        .context("building the lab")?;
    offloads_off(&lab.shield, SHIELD_IF)?;
    let program = synshield.to_str().context("non-UTF-8 path to synshield")?;
    let mut cmd = lab.shield.command(program);
    let port = PORT.to_string();
    cmd.args(["serve", "--iface", SHIELD_IF, "--xdp-mode", "native", "--quiet"]);
    cmd.args(["--port", &port, "--app", "echo"]);
    let mut process = Process::spawn(&mut cmd, "synshield")?;
    process.wait_for_line(|l| l.starts_with("synshield: attached"), START_DEADLINE)?;
    kernel_echo(&lab)?;
    let loss = Impairment::loss(permille);
    let impaired = Impaired::attach(&lab.client, CLIENT_IF, loss, loss)?;
    let ours = echo(&lab, PORT, data).context("through synshield")?;
    let linux = echo(&lab, KERNEL_PORT, data).context("Linux to Linux")?;
    let counts = impaired.counts()?;
    ensure!(
        counts.egress.dropped > 0 && counts.ingress.dropped > 0,
        "no loss was injected: {counts:?}"
    );
    let status = process.stop(libc::SIGTERM)?;
    ensure!(status.success(), "synshield exited with {status}");
    Ok((ours, linux))
}

/// The kernel's echo on `KERNEL_PORT` in the shield namespace.
fn kernel_echo(lab: &Lab) -> Result<()> {
    let listener = lab
        .shield
        .enter(|| TcpListener::bind((SHIELD_V4, KERNEL_PORT)))?
        .context("listening in the shield namespace")?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { break };
            std::thread::spawn(move || {
                let Ok(mut r) = s.try_clone() else { return };
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(())
}

/// Echoes `data` through `port` from the client namespace; checks it on the way back and
/// returns MB/s of the stream one way.
fn echo(lab: &Lab, port: u16, data: &[u8]) -> Result<f64> {
    let addr = SocketAddr::from((SHIELD_V4, port));
    let stream = lab
        .client
        .enter(move || TcpStream::connect_timeout(&addr, Duration::from_secs(10)))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_mins(2)))?;
    let started = Instant::now();
    let elapsed = std::thread::scope(|s| -> Result<Duration> {
        let mut writer = stream.try_clone()?;
        let sender = s.spawn(move || -> std::io::Result<()> {
            writer.write_all(data)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut reader = &stream;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        loop {
            let n = read_some(&mut reader, &mut buf).context("reading the echo")?;
            if n == 0 {
                break;
            }
            ensure!(
                got + n <= data.len() && buf[..n] == data[got..got + n],
                "the echo differs from what was sent at byte {got}"
            );
            got += n;
        }
        sender.join().map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        ensure!(got == data.len(), "echo returned {got} of {} bytes", data.len());
        Ok(started.elapsed())
    })?;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    Ok(data.len() as f64 / 1e6 / elapsed.as_secs_f64())
}
