//! Helpers for the operations tests (top, README, systemd unit): a tmux session to read a
//! terminal program's screen, and a SYN flood bounded in seconds and in packets. Each is a
//! guard that ends what it started, by PID, when dropped (also when a test panics).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tcp_user::lab::{CLIENT_V4, Lab, SHIELD_V4};

/// Upper bound for a screen or an event to appear; the wait ends as soon as it does.
pub const DEADLINE: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A tmux server of our own (a private socket in the temporary directory, removed on drop),
/// running one program in one pane.
pub struct Tmux {
    socket: String,
    server_pid: Option<i32>,
    /// The pane's first process: the leader of the pane's own process group, which holds
    /// the program and whatever it started.
    pane_pid: Option<i32>,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached `width` x `height` session.
    pub fn start(width: u16, height: u16, command: &str) -> Tmux {
        let socket = format!(
            "synshield-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("tmux")
            .args(["-S", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .status()
            .expect("tmux is installed (cargo xtask setup)");
        assert!(status.success(), "tmux new-session failed: {status}");
        let mut tmux = Tmux { socket, server_pid: None, pane_pid: None };
        tmux.server_pid = tmux.output(&["display-message", "-p", "#{pid}"]).trim().parse().ok();
        assert!(tmux.server_pid.is_some(), "no tmux server pid");
        tmux.pane_pid =
            tmux.output(&["display-message", "-p", "-t", "0", "#{pane_pid}"]).trim().parse().ok();
        assert!(tmux.pane_pid.is_some(), "no pane pid");
        tmux
    }

    fn output(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-S", &self.socket]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's text, one line per row.
    pub fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", "0"])
    }

    /// The pane's text with the rows that the terminal wrapped joined into their line.
    pub fn joined_screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-J", "-t", "0"])
    }

    /// Waits until the screen satisfies `pred`, reading it every 100 ms (a terminal has no
    /// event to wait on); panics with the last screen after [`DEADLINE`].
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types keys into the pane (tmux key names: `q`, `C-c`, `Enter`).
    pub fn send_keys(&self, keys: &str) {
        self.output(&["send-keys", "-t", "0", keys]);
    }

    /// The pane's first process (the shell command line's process).
    pub fn pane_pid(&self) -> i32 {
        self.pane_pid.unwrap()
    }

    /// Ends the tmux server alone, as a closed terminal window would: the pane's terminal
    /// hangs up, and only the pane's session leader gets SIGHUP.
    pub fn hang_up(&mut self) {
        if let Some(pid) = self.server_pid.take() {
            // SAFETY: signalling the tmux server this guard started (its own socket).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// Whether the session still runs (it ends when its program exits).
    pub fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-S", &self.socket, "has-session"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The program first: `serve` takes SIGHUP (the server's hang-up) as "re-read the key
        // file" and would outlive the server. SIGTERM to the pane's process group, then
        // SIGKILL to it if the pane's first process has not exited by the deadline.
        if let Some(pane) = self.pane_pid
            && self.alive()
        {
            let exit = Exit::watch(pane);
            // SAFETY: signalling the process group of the pane this guard started.
            unsafe { libc::kill(-pane, libc::SIGTERM) };
            if !exit.wait(DEADLINE) {
                // SAFETY: as above.
                unsafe { libc::kill(-pane, libc::SIGKILL) };
            }
        }
        if let Some(pid) = self.server_pid
            && self.alive()
        {
            // SAFETY: signalling the tmux server this guard started (its own socket).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        // The server leaves its socket behind when it exits.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The exit of a process that is not our child (a pane's program): a pidfd, readable once the
/// process has exited, and which keeps its pid from being reused while held.
pub struct Exit(Option<std::os::fd::OwnedFd>);

impl Exit {
    /// Watches `pid`; one that is already gone counts as exited.
    pub fn watch(pid: i32) -> Exit {
        use std::os::fd::FromRawFd as _;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a fresh fd that nothing else owns.
        Exit(
            i32::try_from(fd)
                .ok()
                .filter(|&fd| fd >= 0)
                .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
        )
    }

    /// Waits up to `timeout` for the exit; whether it came.
    pub fn wait(&self, timeout: Duration) -> bool {
        use std::os::fd::AsRawFd as _;
        let Some(fd) = &self.0 else { return true };
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&raw mut pfd, 1, ms) == 1 }
    }
}

/// hping3 `--flood --rand-source` from the client namespace at the shield, bounded in seconds
/// by `timeout` (hping3 ignores `-c` with `--flood`) and in packets by an nftables quota in the
/// client namespace that drops every flood SYN past `max_packets`. The lab's own address is
/// exempt, so real clients still get through.
pub struct Flood {
    child: Child,
}

/// An IPv4 header and a bare TCP header: what the quota counts per hping3 SYN.
const SYN_BYTES: u64 = 40;

impl Flood {
    pub fn start(lab: &Lab, port: u16, seconds: u32, max_packets: u64) -> Flood {
        let quota = max_packets * SYN_BYTES;
        let rules = format!(
            "table ip synshield_flood_bound {{ chain out {{ type filter hook output priority 0; \
             ip saddr != {CLIENT_V4} tcp flags == syn quota over {quota} bytes drop ; }} ; }}"
        );
        lab.client.run("nft", &[&rules]).unwrap();
        let child = lab
            .client
            .command("timeout")
            .args(["--signal=INT", "--kill-after=2", &format!("{seconds}s")])
            .args(["hping3", "-q", "-S", "-p", &port.to_string(), "--flood", "--rand-source"])
            .arg(SHIELD_V4.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hping3 is installed (cargo xtask setup)");
        Flood { child }
    }

    /// Waits for the flood to end (its time bound).
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = i32::try_from(self.child.id()).expect("pid fits");
            // SAFETY: signalling `timeout`, which we started; it passes SIGTERM to hping3.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}
