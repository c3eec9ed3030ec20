//! `xtask hold`: a process that holds many idle TCP connections, driven over its standard input,
//! for the memory benchmark. A process may hold fewer sockets than the benchmark needs (the
//! open-file limit here is 20,000 and cannot be raised without CAP_SYS_RESOURCE), so the
//! benchmark runs several, each on its own port.
//!
//! Protocol, one line each way:
//! - `connect ADDR` mode: `open N` -> opens connections to ADDR until N are held (each sends one
//!   byte and reads it back, so it is established on both sides and went through the server's
//!   application), answers `held N`. End of input closes them all and exits.
//! - `serve ADDR` mode: answers `listening` once bound; accepts, echoes one byte and keeps every
//!   connection until end of input.

use super::process::wait_timeout;
use super::*;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Runs `xtask hold MODE ADDR`.
pub fn hold(mode: &str, addr: SocketAddr) -> Result<()> {
    match mode {
        "connect" => hold_connect(addr),
        "serve" => hold_serve(addr),
        _ => bail!("xtask hold: mode is connect or serve, not {mode:?}"),
    }
}

fn hold_connect(addr: SocketAddr) -> Result<()> {
    let mut held: Vec<TcpStream> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let n: usize = line
            .strip_prefix("open ")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("xtask hold: expected `open N`, got {line:?}"))?;
        while held.len() < n {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connection {} to {addr}", held.len()))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).with_context(|| format!("echo on connection {}", held.len()))?;
            held.push(s);
        }
        println!("held {}", held.len());
        std::io::stdout().flush()?;
    }
    Ok(())
}

fn hold_serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    println!("listening");
    std::io::stdout().flush()?;
    // End of input ends the server: watched on a thread.
    let (done_tx, done) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = done_tx.send(());
    });
    let mut held = Vec::new();
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
                    held.push(s);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if done.recv_timeout(Duration::from_millis(10)).is_ok() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e).context("accepting"),
        }
    }
}

/// A running `xtask hold` process in a namespace.
pub(super) struct Holder {
    process: Process,
}

impl Holder {
    pub(super) fn start(ns: &Netns, mode: &str, addr: SocketAddr) -> Result<Holder> {
        let exe = std::env::current_exe().context("finding the xtask binary")?;
        let exe = exe.to_str().context("non-UTF-8 path to xtask")?;
        let mut cmd = ns.command(exe);
        cmd.args(["hold", mode, &addr.to_string()]).stdin(Stdio::piped());
        let mut process = Process::spawn_with_stdin(&mut cmd, "xtask hold")?;
        if mode == "serve" {
            process.wait_for_line(|l| l == "listening", START_DEADLINE)?;
        }
        Ok(Holder { process })
    }

    /// Has the holder open connections until it holds `n`.
    pub(super) fn open(&mut self, n: usize) -> Result<()> {
        let stdin = self.process.child.stdin.as_mut().context("the holder's stdin")?;
        writeln!(stdin, "open {n}")?;
        stdin.flush()?;
        let want = format!("held {n}");
        self.process.wait_for_line(|l| l == want, Duration::from_mins(2))
    }

    /// Closes every connection (end of input) and waits for the process to end.
    pub(super) fn finish(mut self) -> Result<()> {
        drop(self.process.child.stdin.take());
        let status = wait_timeout(&mut self.process.child, GRACE)?;
        ensure!(status.is_some_and(|s| s.success()), "xtask hold ended with {status:?}");
        Ok(())
    }
}
