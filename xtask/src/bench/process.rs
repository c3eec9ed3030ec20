//! Processes, interruption, temporary files.

use super::*;

/// `read`, again when a signal interrupted it. A socket read with a timeout (SO_RCVTIMEO) is
/// never restarted by the kernel: any signal to the process ends it with EINTR, which
/// `Read::read` passes on.
pub(super) fn read_some(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// A line of output and when it was read.
pub(super) type Line = (Instant, String);

/// A child process in its own process group (so a Ctrl-C on the terminal reaches xtask, which
/// cleans up, and not the child directly), stopped by its PID when dropped.
pub(super) struct Process {
    pub(super) child: Child,
    pub(super) what: &'static str,
    pub(super) stdout: mpsc::Receiver<Line>,
    pub(super) stderr: mpsc::Receiver<Line>,
    /// Lines already taken from `stdout` (status lines, error messages).
    pub(super) seen: Vec<Line>,
}

impl Process {
    pub(super) fn spawn(cmd: &mut Command, what: &'static str) -> Result<Process> {
        Process::spawn_with_stdin(cmd.stdin(Stdio::null()), what)
    }

    /// As [`Process::spawn`], with the standard input `cmd` already has (a pipe, say).
    pub(super) fn spawn_with_stdin(cmd: &mut Command, what: &'static str) -> Result<Process> {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        let stdout = lines(child.stdout.take().context("stdout is piped")?);
        let stderr = lines(child.stderr.take().context("stderr is piped")?);
        Ok(Process { child, what, stdout, stderr, seen: Vec::new() })
    }

    /// Waits until a line of standard output satisfies `pred`.
    pub(super) fn wait_for_line(
        &mut self,
        pred: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = pred(&line.1);
                    self.seen.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("not within {limit:?}"),
                        RecvTimeoutError::Disconnected => "it exited".to_owned(),
                    };
                    let output = self.output_summary();
                    bail!("{} did not start ({why}): {output}", self.what);
                }
            }
        }
    }

    /// What the process wrote, for an error message: its standard output, and the beginning
    /// and the end of its standard error (a verifier log runs to thousands of lines).
    pub(super) fn output_summary(&mut self) -> String {
        const HEAD: usize = 2;
        const TAIL: usize = 8;
        self.seen.extend(self.stdout.try_iter());
        // Standard error closes when the process exits; wait a moment for the last lines.
        let mut err = Vec::new();
        while let Ok((_, l)) = self.stderr.recv_timeout(Duration::from_secs(1)) {
            err.push(l);
        }
        if err.len() > HEAD + TAIL {
            let skipped = format!("[... {} lines ...]", err.len() - HEAD - TAIL);
            err.splice(HEAD..err.len() - TAIL, [skipped]);
        }
        let out: Vec<&str> = self.seen.iter().map(|(_, l)| l.trim()).collect();
        format!("output {out:?}; errors {err:?}")
    }

    /// SYN-ACKs per second between two moments, from the first and the last status line read
    /// between them; `None` with fewer than two such lines.
    pub(super) fn synack_rate(&mut self, from: Instant, to: Instant) -> Option<f64> {
        self.seen.extend(self.stdout.try_iter());
        let mut inside = self
            .seen
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .filter_map(|(at, l)| Some((*at, status_tx_synack(l)?)));
        let first = inside.next()?;
        let last = inside.next_back()?;
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
        let rate = last.1.saturating_sub(first.1) as f64 / seconds;
        (seconds > 0.0).then_some(rate)
    }

    /// Of the status lines read between two moments, the share whose fields start with
    /// `prefix` (`mode adaptive:cookies`, say); `None` without any status line.
    pub(super) fn share_of_status_lines(
        &mut self,
        from: Instant,
        to: Instant,
        prefix: &str,
    ) -> Option<f64> {
        self.seen.extend(self.stdout.try_iter());
        let fields: Vec<&str> = self
            .seen
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .filter_map(|(_, l)| l.strip_prefix("status: "))
            .collect();
        let matching = fields.iter().filter(|f| f.starts_with(prefix)).count();
        #[expect(clippy::cast_precision_loss, reason = "a share of a few status lines")]
        let share = matching as f64 / fields.len() as f64;
        (!fields.is_empty()).then_some(share)
    }

    /// A pidfd for the process: readable once it has exited.
    pub(super) fn pidfd(&self) -> Result<OwnedFd> {
        pidfd_open(self.child.id()).with_context(|| format!("pidfd_open for {}", self.what))
    }

    /// Sends `signal` to the process (by PID), waits up to `GRACE` for it to exit, then kills
    /// its process group (it and what it started) and reaps it.
    pub(super) fn stop(&mut self, signal: libc::c_int) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("PID out of range")?;
        // SAFETY: signalling a child we started and have not reaped (try_wait saw it running).
        unsafe { libc::kill(pid, signal) };
        if let Some(status) = wait_timeout(&mut self.child, GRACE)? {
            return Ok(status);
        }
        eprintln!("xtask bench: {} did not exit within {GRACE:?}: killing it", self.what);
        // SAFETY: the group the child leads (process_group(0) or its own setpgid), not reaped.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.stop(libc::SIGTERM);
    }
}

/// Lines of a pipe with the time each was read, read on a thread, as a channel.
pub(super) fn lines<R: io::Read + Send + 'static>(r: R) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, at most `limit`: `poll` on a pidfd, an event rather than a loop
/// of sleeps.
pub(super) fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let fd = pidfd_open(child.id())?;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd. EINTR (a signal for xtask) just ends the wait early.
    unsafe { libc::poll(&raw mut pfd, 1, poll_ms(limit)) };
    Ok(child.try_wait()?)
}

pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A poll(2) timeout in milliseconds, rounded up so that a wait never ends early.
pub(super) fn poll_ms(d: Duration) -> libc::c_int {
    libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}

/// A signal asked xtask to stop; the lab is removed on the way out.
#[derive(Debug)]
pub(super) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal: the lab and its processes were removed")
    }
}

impl std::error::Error for Interrupted {}

/// The write end of the self-pipe that the signal handler writes to; -1 when not installed.
pub(super) static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) on a pipe is async-signal-safe; a full pipe just means "already told".
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// SIGINT, SIGTERM and SIGHUP while the lab exists, turned into an error at the next wait (a
/// self-pipe), so that the processes and namespaces are removed by their destructors rather
/// than left behind. The previous handlers come back when this is dropped.
pub(super) struct Interrupts {
    pub(super) read: OwnedFd,
    pub(super) _write: OwnedFd,
    pub(super) previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Interrupts {
    pub(super) const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    pub(super) fn install() -> Result<Interrupts> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error()).context("creating the signal pipe");
        }
        // SAFETY: both fds are new and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        let mut interrupts = Interrupts { read, _write: write, previous: Vec::new() };
        for signal in Self::SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler only calls write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&raw mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &raw const action, &raw mut previous) != 0 {
                    return Err(io::Error::last_os_error()).context("installing a signal handler");
                }
                interrupts.previous.push((signal, previous));
            }
        }
        Ok(interrupts)
    }

    /// Waits `limit`, or until `also` is readable (true), or fails as soon as a signal
    /// arrives (or if one arrived before).
    pub(super) fn wait(&self, also: Option<&OwnedFd>, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [self.read.as_raw_fd(), also.map_or(-1, AsRawFd::as_raw_fd)]
                .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            // SAFETY: two pollfds (a negative fd is ignored by poll).
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, poll_ms(left)) } > 0 {
                if fds[0].revents != 0 {
                    return Err(Interrupted.into());
                }
                if fds[1].revents != 0 {
                    return Ok(true);
                }
            }
            // Timed out, or EINTR: done if the time is up, else wait for the rest.
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Fails if a signal has arrived.
    pub(super) fn check(&self) -> Result<()> {
        self.wait(None, Duration::ZERO).map(drop)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: restoring the action sigaction gave us.
            unsafe { libc::sigaction(*signal, previous, std::ptr::null_mut()) };
        }
        WAKE_FD.store(-1, Ordering::Relaxed);
    }
}

/// A directory for the trafgen configurations, removed when dropped.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("synshield-bench-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
