//! Helpers shared by the root tests: a synshield process guard and line waiting.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use tcp_user::lab::Netns;

/// Upper bound for an event a test waits for; the wait ends as soon as the event happens.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);

/// A `synshield` process started by the test, killed by PID on drop if still running.
pub struct Synshield {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
}

impl Synshield {
    /// Starts `synshield ARGS` in `ns` and waits for its "attached" line.
    pub fn start(ns: &Netns, args: &[&str]) -> Synshield {
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_synshield"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn synshield");
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        let s = Synshield { child, stdout, stderr };
        if let Err(seen) = wait_for_line(&s.stdout, |l| l.starts_with("synshield: attached")) {
            let errors: Vec<String> = s.stderr.try_iter().collect();
            panic!("synshield did not attach; stdout {seen:?}; stderr {errors:?}");
        }
        s
    }

    /// Sends SIGTERM to the process (by its PID).
    pub fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: signalling a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
}

impl Drop for Synshield {
    fn drop(&mut self) {
        let status = self.child.try_wait();
        if matches!(status, Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // What synshield said is the first thing to read when a test fails.
            eprintln!("synshield exit status before the test ended it: {status:?}");
            for line in self.stderr.try_iter() {
                eprintln!("synshield stderr: {line}");
            }
        }
    }
}

/// Lines of a pipe, read on a thread, as a channel.
pub fn lines<R: std::io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line matching `pred`; returns it, or every line seen if the deadline passed or
/// the stream ended first.
pub fn wait_for_line(
    rx: &Receiver<String>,
    pred: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}
