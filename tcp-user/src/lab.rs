//! The namespace lab: two network namespaces, a client host and a shield host, joined by a veth
//! pair, for tests and for `cargo xtask run`.
//!
//! ```text
//!   netns <name>-c                         netns <name>-s
//!   ┌──────────────────────┐               ┌──────────────────────┐
//!   │ client0              │     veth      │ shield0              │
//!   │ 198.18.0.1/24        ├───────────────┤ 198.18.0.2/24        │
//!   │ 2001:2::1/64         │               │ 2001:2::2/64         │
//!   │ [XDP_PASS, optional] │               │ [synshield XDP]      │
//!   └──────────────────────┘               └──────────────────────┘
//! ```
//!
//! Addresses come only from the benchmarking ranges 198.18.0.0/15 (RFC 2544) and 2001:2::/48
//! (RFC 5180) and exist only inside the lab's namespaces, which are created with unique names
//! so that parallel tests do not collide. Dropping the [`Lab`] deletes both namespaces, and with
//! them the veth pair and anything attached to it, also when a test panics.
//!
//! This file depends on `std` and `libc` only: `xtask` compiles the same file (with `#[path]`) for
//! `cargo xtask run`, so there is one lab and not two.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The client host's IPv4 address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The shield host's IPv4 address.
pub const SHIELD_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client host's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// The shield host's IPv6 address.
pub const SHIELD_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// Interface name of the veth end in the client namespace.
pub const CLIENT_IF: &str = "client0";
/// Interface name of the veth end in the shield namespace.
pub const SHIELD_IF: &str = "shield0";

/// An error from building or using the lab.
#[derive(Debug)]
pub struct LabError(String);

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

impl From<io::Error> for LabError {
    fn from(e: io::Error) -> Self {
        LabError(e.to_string())
    }
}

/// One network namespace, named in `/run/netns` (as `ip netns add` makes it).
#[derive(Debug, Clone)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// The namespace's name, as `ip netns` shows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside this namespace (`ip netns exec NAME program ...`).
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args...` inside the namespace and returns its stdout; a non-zero exit is an
    /// error that carries the command and its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let out = self.command(program).args(args).stdin(Stdio::null()).output()?;
        check(&format!("ip netns exec {} {program} {}", self.name, args.join(" ")), &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns what it returns.
    /// Sockets made inside `f` stay in this namespace after it returns, so a test can connect
    /// from the client namespace and then use the stream anywhere.
    pub fn enter<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T, LabError> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|e| LabError(format!("cannot open {path}: {e}")))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd; it changes only this (new) thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(LabError(format!(
                        "setns into {path}: {}",
                        io::Error::last_os_error()
                    )));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.tcp_timestamps=0`, ...).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        self.run("sysctl", &["-q", "-w", &format!("{key}={value}")]).map(drop)
    }
}

/// What to build besides the two namespaces and the veth pair.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Attach a minimal XDP_PASS program to the client's veth end. Native XDP_TX (and
    /// XDP_REDIRECT) on a veth only delivers when the peer end runs an XDP program too.
    /// ([`attach_xdp_action`] attaches other minimal programs, e.g. an XDP_DROP sink.)
    pub client_xdp_pass: bool,
    /// Use these fixed namespace names (`<prefix>-c`, `<prefix>-s`) instead of unique ones,
    /// removing leftovers of the same names first. For `cargo xtask run`.
    pub fixed_prefix: Option<String>,
    /// RX and TX queues of each veth end (0 or 1: one). With more, the client spreads its
    /// flows over the queues by their hash and the shield receives them on as many RX queues,
    /// as a multi-queue NIC with RSS would.
    pub queues: u32,
}

/// A client and a shield namespace joined by a veth pair. Dropping it removes everything.
pub struct Lab {
    /// The client host.
    pub client: Netns,
    /// The shield host.
    pub shield: Netns,
    /// Keeps the client-side XDP_PASS program attached (a BPF link detaches when closed).
    client_xdp_link: Option<OwnedFd>,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("client", &self.client)
            .field("shield", &self.shield)
            .finish_non_exhaustive()
    }
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds a lab with default options.
    pub fn new() -> Result<Lab, LabError> {
        Lab::with_options(&LabOptions::default())
    }

    /// Builds a lab: namespaces, veth pair, addresses, links up, TX checksum offload off (so
    /// that XDP sees real checksums), and what `options` asks for.
    pub fn with_options(options: &LabOptions) -> Result<Lab, LabError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LabError(
                "the lab needs root to create network namespaces: run as root (sudo)".into(),
            ));
        }
        let prefix = match &options.fixed_prefix {
            Some(p) => {
                for suffix in ["c", "s"] {
                    // A leftover of an earlier run that was killed: remove it, ignore absence.
                    let _ = Command::new("ip")
                        .args(["netns", "del", &format!("{p}-{suffix}")])
                        .stderr(Stdio::null())
                        .status();
                }
                p.clone()
            }
            None => format!(
                "synlab-{}-{}",
                std::process::id(),
                NEXT_LAB.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let client = Netns { name: format!("{prefix}-c") };
        let shield = Netns { name: format!("{prefix}-s") };
        ip(&["netns", "add", &client.name])?;
        // From here on, `lab` owns what exists, so an error below still cleans up on drop.
        let mut lab = Lab { client, shield, client_xdp_link: None };
        ip(&["netns", "add", &lab.shield.name])?;
        // `numtxqueues` before `numrxqueues`: iproute2 refuses the other order for veth.
        let queues = options.queues.max(1).to_string();
        let q = ["numtxqueues", queues.as_str(), "numrxqueues", queues.as_str()];
        let mut args = vec!["link", "add", CLIENT_IF, "netns", &lab.client.name];
        args.extend(q);
        args.extend(["type", "veth", "peer", "name", SHIELD_IF, "netns", &lab.shield.name]);
        args.extend(q);
        ip(&args)?;
        for (ns, ifname, v4, v6) in [
            (&lab.client, CLIENT_IF, CLIENT_V4, CLIENT_V6),
            (&lab.shield, SHIELD_IF, SHIELD_V4, SHIELD_V6),
        ] {
            ns.run("ip", &["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ns.run("ip", &["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"])?;
            ns.run("ip", &["link", "set", "dev", ifname, "up"])?;
            ns.run("ip", &["link", "set", "dev", "lo", "up"])?;
            ns.run("ethtool", &["-K", ifname, "tx", "off"])?;
        }
        if options.client_xdp_pass {
            let fd = lab
                .client
                .enter(|| attach_xdp_action(CLIENT_IF, XdpAction::Pass, XdpAttachMode::Native))??;
            lab.client_xdp_link = Some(fd);
        }
        Ok(lab)
    }

    /// MAC address of an interface in a namespace.
    pub fn mac(ns: &Netns, ifname: &str) -> Result<[u8; 6], LabError> {
        let s = ns.run("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 6 {
            return Err(LabError(format!("bad MAC address {s:?} for {ifname}")));
        }
        for (b, p) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).map_err(|e| LabError(format!("bad MAC {s:?}: {e}")))?;
        }
        Ok(mac)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Close the client XDP link first, then delete the namespaces: deleting a namespace
        // destroys its veth end, which destroys the pair.
        self.client_xdp_link = None;
        for ns in [&self.client, &self.shield] {
            let _ =
                Command::new("ip").args(["netns", "del", &ns.name]).stderr(Stdio::null()).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    check(&format!("ip {}", args.join(" ")), &out)
}

fn check(what: &str, out: &Output) -> Result<(), LabError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// What a two-instruction lab program answers for every frame (`enum xdp_action` in
/// include/uapi/linux/bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum XdpAction {
    /// Drop every frame: the cheapest possible receiver, the ceiling for a benchmark.
    Drop = 1,
    /// Hand every frame to the kernel: makes native XDP_TX on the peer veth deliver.
    Pass = 2,
    /// Send every frame back out unchanged: the cheapest possible XDP_TX answer.
    Tx = 3,
}

/// How [`attach_xdp_action`] attaches its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`); veth supports it.
    Native,
    /// On the skb path (`XDP_FLAGS_SKB_MODE`); works on every interface, slower.
    Generic,
}

/// Loads the two-instruction program `r0 = action; exit` with the `bpf` syscall and attaches
/// it to `ifname` (in the calling thread's namespace) in `mode` through a BPF link. The
/// returned fd is the link: closing it detaches the program.
///
/// Raw syscalls rather than aya, so that this file needs nothing but libc and can be shared
/// with xtask.
pub fn attach_xdp_action(
    ifname: &str,
    action: XdpAction,
    mode: XdpAttachMode,
) -> Result<OwnedFd, LabError> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    let [a0, a1, a2, a3] = (action as u32).to_le_bytes();
    // mov64 r0, action (opcode 0xb7, dst r0, imm32); exit (0x95)
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, a0, a1, a2, a3]), 0x95];
    let license = c"GPL";
    let (what, name): (&str, &[u8]) = match action {
        XdpAction::Drop => ("XDP_DROP", b"lab_xdp_drop"),
        XdpAction::Pass => ("XDP_PASS", b"lab_xdp_pass"),
        XdpAction::Tx => ("XDP_TX", b"lab_xdp_tx"),
    };

    // union bpf_attr, BPF_PROG_LOAD view (include/uapi/linux/bpf.h).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes()); // prog_type
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes()); // insn_cnt
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes()); // insns
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes()); // license
    attr[48..48 + name.len()].copy_from_slice(name); // prog_name (16 bytes, NUL-padded)
    attr[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes()); // expected_attach_type
    let prog = bpf(BPF_PROG_LOAD, &attr).map_err(|e| LabError(format!("loading {what}: {e}")))?;

    let c_if = CString::new(ifname).map_err(|e| LabError(e.to_string()))?;
    // SAFETY: valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c_if.as_ptr()) };
    if ifindex == 0 {
        return Err(LabError(format!("no interface {ifname} in this namespace")));
    }
    let flags = match mode {
        XdpAttachMode::Native => XDP_FLAGS_DRV_MODE,
        XdpAttachMode::Generic => XDP_FLAGS_SKB_MODE,
    };
    // BPF_LINK_CREATE view: prog_fd, target_ifindex, attach_type, flags.
    let mut attr = [0u8; 128];
    let prog_fd = u32::try_from(prog.as_raw_fd()).map_err(|e| LabError(e.to_string()))?;
    attr[0..4].copy_from_slice(&prog_fd.to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
    attr[12..16].copy_from_slice(&flags.to_ne_bytes());
    bpf(BPF_LINK_CREATE, &attr).map_err(|e| LabError(format!("attaching {what} to {ifname}: {e}")))
}

fn bpf(cmd: libc::c_long, attr: &[u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-padded bpf_attr of the size we pass; the kernel reads only it
    // and the buffers it points to, which outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(r).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
