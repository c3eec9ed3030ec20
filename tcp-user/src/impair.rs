//! Link impairments for the lab: random loss and reordering of TCP frames on a veth, and a
//! count of frames longer than the MTU, both ways. This kernel has no netem.
//!
//! ```text
//!                 egress program                        ingress program
//!   client TCP ──► [drop ‰ │ count │ reorder ‰] ──► veth ──► [drop ‰ │ count │ reorder ‰] ──► client TCP
//!                                    │                                        │
//!                       redirect to  ▼ tap "<if>-re"            tap "<if>-ri" ▼
//!                              delay line thread: holds each frame a few ms, writes it back;
//!                              the tap's ingress program marks it and redirects it on (the
//!                              frame then passes the veth program untouched)
//! ```
//!
//! # How
//!
//! Two small `BPF_PROG_TYPE_SCHED_CLS` programs (the clsact hook's program type) per
//! impaired device, written as raw BPF instructions and loaded with the `bpf` syscall, as
//! [`crate::lab::attach_xdp_action`] does: no clang, no BPF build. They are attached with
//! BPF links to the device's tcx ingress and egress hooks (Linux 6.6 and later: the clsact
//! hooks without a qdisc), so closing the link fds detaches them and nothing is left
//! behind. For each TCP frame (IPv4 or IPv6, after the Ethernet header) the program:
//!
//! 1. counts it, and counts it as oversized if it is longer than the MTU plus the
//!    14-byte Ethernet header;
//! 2. drops it with probability `loss_permille / 1000` (`bpf_get_prandom_u32() % 1000`);
//! 3. otherwise, with probability `reorder_permille / 1000`, redirects it to a tap device
//!    whose other end is a thread of this process that holds it for `reorder_delay` and
//!    then writes it back; the tap's own ingress program marks it (`skb->mark`) and
//!    redirects it to where it was going (the veth's egress, or its ingress with
//!    `BPF_F_INGRESS`). Frames behind it overtake it: reordering.
//!
//! Other frames (ARP, ICMP) pass untouched, so neighbour discovery is never impaired.
//!
//! # Reordering on this kernel
//!
//! The usual way without netem is an earliest-departure time: set `skb->tstamp` a few ms
//! ahead on the chosen frames and let the `fq` qdisc hold them. This kernel is built
//! without `sch_fq` (`CONFIG_NET_SCH_FQ` is not set, nor `etf`, `netem`, `plug` or the BPF
//! qdisc); of the qdiscs it has, HTB and TBF shape a class's rate but send the first frame
//! after an idle period at once, so they cannot delay an isolated frame. The delay line
//! above works anywhere taps and tc BPF do (`CONFIG_TUN`, `CONFIG_NET_XGRESS`), with any
//! delay, in both directions (a qdisc would only act on egress).
//!
//! # Offloads
//!
//! The programs see one frame per packet only without segmentation offloads: a TSO/GSO
//! super-packet (up to 64 KiB) would be dropped or delayed whole, and GRO would merge
//! frames before the ingress hook. [`offloads_off`] turns them off (see there why that
//! takes `gso_max_segs 1`); [`Impaired::attach`] does so on the impaired device, and a
//! test whose peer is the kernel's TCP must do so on the peer's device too (a veth hands
//! GSO packets over unsegmented).
//!
//! This file depends on `std`, `libc` and the lab: `xtask` compiles it too (with `#[path]`)
//! for `cargo xtask bench`.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::{LabError, Netns};

/// What to do to the TCP frames crossing one direction of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Impairment {
    /// Frames dropped per thousand.
    pub loss_permille: u16,
    /// Frames (of those not dropped) held back per thousand.
    pub reorder_permille: u16,
    /// How long a held-back frame waits.
    pub reorder_delay: Duration,
    /// Frames longer than this plus the Ethernet header are counted as oversized.
    pub mtu: u32,
}

impl Impairment {
    /// Nothing dropped or reordered: only counting (oversized frames included).
    pub const NONE: Impairment = Impairment {
        loss_permille: 0,
        reorder_permille: 0,
        reorder_delay: Duration::from_millis(5),
        mtu: 1500,
    };

    /// Random loss of `permille` frames per thousand, nothing else.
    #[must_use]
    pub fn loss(permille: u16) -> Impairment {
        Impairment { loss_permille: permille, ..Impairment::NONE }
    }
}

/// What one direction's program saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// TCP frames seen (before any was dropped).
    pub frames: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames held back in the delay line.
    pub reordered: u64,
    /// Frames longer than the MTU allows.
    pub oversized: u64,
}

/// Both directions' counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Frames the device sent.
    pub egress: Counts,
    /// Frames the device received.
    pub ingress: Counts,
}

/// An error for the lab's error type (which takes its text from an `io::Error`).
fn lab_error(message: impl Into<String>) -> LabError {
    LabError::from(io::Error::other(message.into()))
}

/// The `skb->mark` of frames coming back from the delay line ("reor" in ASCII).
const DELAYED_MARK: i32 = 0x7265_6f72;

/// Impairments attached to a device; dropping it detaches the programs, stops the delay
/// line and deletes its taps.
pub struct Impaired {
    ifname: String,
    /// tcx links (closing one detaches its program) and the counter maps.
    _links: Vec<OwnedFd>,
    maps: [OwnedFd; 2],
    delay_line: Option<DelayLine>,
}

impl std::fmt::Debug for Impaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impaired").field("ifname", &self.ifname).finish_non_exhaustive()
    }
}

impl Impaired {
    /// Impairs `ifname` in `ns`: `egress` for the frames it sends, `ingress` for those it
    /// receives. Turns the device's segmentation offloads off (see the module docs).
    pub fn attach(
        ns: &Netns,
        ifname: &str,
        egress: Impairment,
        ingress: Impairment,
    ) -> Result<Impaired, LabError> {
        offloads_off(ns, ifname)?;
        let reorder = egress.reorder_permille > 0 || ingress.reorder_permille > 0;
        // Taps for the delay line: created inside the namespace (a tap lives in the
        // namespace of the thread that creates it), then brought up.
        let (tap_e, tap_i) = if reorder {
            let names = (format!("{ifname}-re"), format!("{ifname}-ri"));
            let taps = ns.enter(|| -> Result<_, LabError> {
                Ok((open_tap(&names.0)?, open_tap(&names.1)?))
            })??;
            for name in [&names.0, &names.1] {
                ns.run("ip", &["link", "set", "dev", name, "mtu", "9000", "up"])?;
            }
            (Some((names.0, taps.0)), Some((names.1, taps.1)))
        } else {
            (None, None)
        };
        let ifname_owned = ifname.to_owned();
        let tap_names = (tap_e.as_ref().map(|t| t.0.clone()), tap_i.as_ref().map(|t| t.0.clone()));
        let (links, maps) = ns.enter(move || -> Result<_, LabError> {
            let dev = ifindex(&ifname_owned)?;
            let tap_index = |name: &Option<String>| name.as_deref().map(ifindex).transpose();
            let (egress_tap, ingress_tap) = (tap_index(&tap_names.0)?, tap_index(&tap_names.1)?);
            let mut links = Vec::new();
            let mut maps = Vec::new();
            for (imp, tap, attach) in
                [(egress, egress_tap, BPF_TCX_EGRESS), (ingress, ingress_tap, BPF_TCX_INGRESS)]
            {
                let map = create_counter_map()?;
                let prog =
                    load_sched_cls(&impair_program(&imp, map.as_raw_fd(), tap), "lab_impair")?;
                links.push(attach_tcx(&prog, dev, attach)?);
                maps.push(map);
            }
            // The taps' programs send delayed frames back where they were going.
            for (tap, flags) in [(egress_tap, 0), (ingress_tap, BPF_F_INGRESS)] {
                if let Some(tap) = tap {
                    let prog = load_sched_cls(&return_program(dev, flags), "lab_delayed")?;
                    links.push(attach_tcx(&prog, tap, BPF_TCX_INGRESS)?);
                }
            }
            let [e, i]: [OwnedFd; 2] =
                maps.try_into().map_err(|_| lab_error("two counter maps"))?;
            Ok((links, [e, i]))
        })??;
        let delay_line = match (tap_e, tap_i) {
            (Some((_, e)), Some((_, i))) => {
                let delays = [egress.reorder_delay, ingress.reorder_delay];
                Some(DelayLine::start([e, i], delays)?)
            }
            _ => None,
        };
        Ok(Impaired { ifname: ifname.to_owned(), _links: links, maps, delay_line })
    }

    /// What the programs counted so far.
    pub fn counts(&self) -> Result<LinkCounts, LabError> {
        let read = |map: &OwnedFd| -> Result<Counts, LabError> {
            let mut v = [0u64; 4];
            for (key, slot) in v.iter_mut().enumerate() {
                *slot = map_lookup(map, u32::try_from(key).unwrap_or(0))?;
            }
            Ok(Counts { frames: v[0], dropped: v[1], reordered: v[2], oversized: v[3] })
        };
        Ok(LinkCounts { egress: read(&self.maps[0])?, ingress: read(&self.maps[1])? })
    }
}

impl Drop for Impaired {
    fn drop(&mut self) {
        // Links first (fields drop after this): the delay line's taps go with its fds.
        if let Some(line) = self.delay_line.take() {
            line.stop();
        }
    }
}

/// Makes every packet one frame on `ifname` in `ns`: TSO, GSO and GRO off, and at most one
/// segment per GSO packet. The last matters: the kernel's TCP always builds GSO packets
/// (software GSO, `sk_setup_caps`) and splits them only after the tc egress hook
/// (`validate_xmit_skb`), so only `gso_max_segs 1` makes it hand the hook single frames.
/// Sockets take it when they connect: call this before.
pub fn offloads_off(ns: &Netns, ifname: &str) -> Result<(), LabError> {
    ns.run("ethtool", &["-K", ifname, "tso", "off", "gso", "off", "gro", "off"])?;
    ns.run("ip", &["link", "set", "dev", ifname, "gso_max_segs", "1"]).map(drop)
}

// ---------------------------------------------------------------------------------------------
// The delay line.

struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl DelayLine {
    /// Holds every frame read from `taps[k]` for `delays[k]`, then writes it back.
    fn start(taps: [File; 2], delays: [Duration; 2]) -> Result<DelayLine, LabError> {
        for tap in &taps {
            set_nonblocking(tap)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lab-delay-line".into())
            .spawn(move || delay_line(&taps, delays, &flag))
            .map_err(|e| lab_error(e.to_string()))?;
        Ok(DelayLine { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn delay_line(taps: &[File; 2], delays: [Duration; 2], stop: &AtomicBool) {
    let mut held: [VecDeque<(Instant, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Write back what is due (each queue is in arrival order, so in due order).
        for (k, queue) in held.iter_mut().enumerate() {
            while queue.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, frame)) = queue.pop_front() {
                    let _ = (&taps[k]).write(&frame);
                }
            }
        }
        let next_due = held.iter().filter_map(|q| q.front().map(|(due, _)| *due)).min();
        let wait = next_due.map_or(Duration::from_millis(10), |due| {
            due.saturating_duration_since(now).min(Duration::from_millis(10))
        });
        let mut fds = [
            libc::pollfd { fd: taps[0].as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: taps[1].as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let timeout = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(10);
        // SAFETY: two valid pollfds, their count passed along.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        for k in 0..2 {
            loop {
                match (&taps[k]).read(&mut buf) {
                    Ok(n) if n > 0 => {
                        held[k].push_back((Instant::now() + delays[k], buf[..n].to_vec()));
                    }
                    _ => break,
                }
            }
        }
    }
}

fn set_nonblocking(file: &File) -> Result<(), LabError> {
    // SAFETY: fcntl on a valid fd.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(lab_error(format!("O_NONBLOCK on a tap: {}", io::Error::last_os_error())));
    }
    Ok(())
}

/// Opens a tap device named `name` (in the calling thread's namespace), frames without the
/// packet-information header. It exists as long as the file is open.
fn open_tap(name: &str) -> Result<File, LabError> {
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| lab_error(format!("opening /dev/net/tun: {e}")))?;
    // struct ifreq: the name (16 bytes) then the flags (a short), padded to 40 bytes.
    let mut ifr = [0u8; 40];
    let bytes = name.as_bytes();
    if bytes.len() >= 16 {
        return Err(lab_error(format!("tap name {name:?} is longer than 15 bytes")));
    }
    ifr[..bytes.len()].copy_from_slice(bytes);
    ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` is large enough for.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(lab_error(format!("creating tap {name}: {}", io::Error::last_os_error())));
    }
    Ok(file)
}

fn ifindex(name: &str) -> Result<u32, LabError> {
    let c = CString::new(name).map_err(|e| lab_error(e.to_string()))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(lab_error(format!("no interface {name} in this namespace"))),
        i => Ok(i),
    }
}

// ---------------------------------------------------------------------------------------------
// The programs, as BPF instructions (include/uapi/linux/bpf.h, Documentation/bpf/standardization).

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `enum bpf_attach_type` (Linux 6.6 and later).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_F_INGRESS: i32 = 1;

/// Helper function numbers.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_GET_PRANDOM_U32: i32 = 7;
const HELPER_REDIRECT: i32 = 23;

/// tc (and tcx) verdicts.
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// `struct __sk_buff` field offsets.
const SKB_LEN: i16 = 0;
const SKB_MARK: i16 = 8;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

/// Counter slots in a direction's map.
const COUNT_FRAMES: i32 = 0;
const COUNT_DROPPED: i32 = 1;
const COUNT_REORDERED: i32 = 2;
const COUNT_OVERSIZED: i32 = 3;

/// One instruction, or a jump to a label resolved when the program is assembled.
#[derive(Clone, Copy)]
enum Insn {
    Raw {
        code: u8,
        dst: u8,
        src: u8,
        off: i16,
        imm: i32,
    },
    /// `if dst <op> imm goto label` (or `goto label` for `JA`).
    Jump {
        code: u8,
        dst: u8,
        imm: i32,
        label: u8,
    },
    Label(u8),
    /// `dst = map fd` (two slots: `ld_imm64` with `BPF_PSEUDO_MAP_FD`).
    LoadMap {
        dst: u8,
        fd: i32,
    },
}

// Opcodes (class | op | source).
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const MOD64_IMM: u8 = 0x97;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const ST_W: u8 = 0x62;
const STX_W: u8 = 0x63;
const STX_ATOMIC_DW: u8 = 0xdb;
const JA: u8 = 0x05;
const JEQ_IMM: u8 = 0x15;
const JGT_IMM: u8 = 0x25;
const JNE_IMM: u8 = 0x55;
const JLT_IMM: u8 = 0xa5;
const JGE_IMM: u8 = 0x35;
const JGT_REG: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::Raw { code, dst, src, off, imm }
}

fn mov_imm(dst: u8, imm: i32) -> Insn {
    raw(MOV64_IMM, dst, 0, 0, imm)
}

fn call(helper: i32) -> Insn {
    raw(CALL, 0, 0, 0, helper)
}

fn exit_with(code: i32) -> [Insn; 2] {
    [mov_imm(0, code), raw(EXIT, 0, 0, 0, 0)]
}

/// Adds one to counter `slot` of the map in `map_fd` (clobbers r0 to r5).
fn count(map_fd: i32, slot: i32, skip: u8) -> Vec<Insn> {
    vec![
        raw(ST_W, 10, 0, -4, slot),           // *(u32 *)(fp - 4) = slot
        Insn::LoadMap { dst: 1, fd: map_fd }, // r1 = map
        raw(MOV64_REG, 2, 10, 0, 0),          // r2 = fp
        raw(ADD64_IMM, 2, 0, 0, -4),          // r2 -= 4
        call(HELPER_MAP_LOOKUP_ELEM),         // r0 = &value or NULL
        Insn::Jump { code: JEQ_IMM, dst: 0, imm: 0, label: skip },
        mov_imm(1, 1),
        raw(STX_ATOMIC_DW, 0, 1, 0, 0), // lock *(u64 *)(r0 + 0) += r1
        Insn::Label(skip),
    ]
}

/// The program on the impaired device (see the module docs).
fn impair_program(imp: &Impairment, map_fd: i32, tap: Option<u32>) -> Vec<Insn> {
    const PASS: u8 = 0;
    const V4: u8 = 1;
    const TCP: u8 = 2;
    const NOT_OVERSIZED: u8 = 3;
    const DROP: u8 = 4;
    const OVERSIZED: u8 = 5;
    const C1: u8 = 10;
    const C2: u8 = 11;
    const C3: u8 = 12;
    const C4: u8 = 13;
    let max_len = i32::try_from(imp.mtu + 14).unwrap_or(i32::MAX);
    let mut p = vec![
        raw(MOV64_REG, 6, 1, 0, 0),        // r6 = skb
        raw(LDX_W, 2, 6, SKB_DATA, 0),     // r2 = data
        raw(LDX_W, 3, 6, SKB_DATA_END, 0), // r3 = data_end
        raw(MOV64_REG, 4, 2, 0, 0),        // r4 = data + 34: Ethernet + IPv4 header
        raw(ADD64_IMM, 4, 0, 0, 34),
        // if r4 > r3 goto pass (a register compare: the register rides in `imm`)
        Insn::Jump { code: JGT_REG, dst: 4, imm: 3, label: PASS },
        raw(LDX_H, 5, 2, 12, 0), // r5 = EtherType (little-endian load)
        Insn::Jump { code: JEQ_IMM, dst: 5, imm: 0x0008, label: V4 },
        Insn::Jump { code: JNE_IMM, dst: 5, imm: 0xdd86, label: PASS },
        raw(LDX_B, 5, 2, 14 + 6, 0), // IPv6 next header
        Insn::Jump { code: JNE_IMM, dst: 5, imm: 6, label: PASS },
        Insn::Jump { code: JA, dst: 0, imm: 0, label: TCP },
        Insn::Label(V4),
        raw(LDX_B, 5, 2, 14 + 9, 0), // IPv4 protocol
        Insn::Jump { code: JNE_IMM, dst: 5, imm: 6, label: PASS },
        Insn::Label(TCP),
        // Back from the delay line: untouched.
        raw(LDX_W, 5, 6, SKB_MARK, 0),
        Insn::Jump { code: JEQ_IMM, dst: 5, imm: DELAYED_MARK, label: PASS },
    ];
    p.extend(count(map_fd, COUNT_FRAMES, C1));
    p.extend([
        raw(LDX_W, 5, 6, SKB_LEN, 0),
        Insn::Jump { code: JGT_IMM, dst: 5, imm: max_len, label: OVERSIZED },
        Insn::Jump { code: JA, dst: 0, imm: 0, label: NOT_OVERSIZED },
        Insn::Label(OVERSIZED),
    ]);
    p.extend(count(map_fd, COUNT_OVERSIZED, C2));
    p.push(Insn::Label(NOT_OVERSIZED));
    if imp.loss_permille > 0 {
        p.extend([
            call(HELPER_GET_PRANDOM_U32),
            raw(MOD64_IMM, 0, 0, 0, 1000),
            Insn::Jump { code: JLT_IMM, dst: 0, imm: i32::from(imp.loss_permille), label: DROP },
        ]);
    }
    if let Some(tap) = tap.filter(|_| imp.reorder_permille > 0) {
        p.extend([
            call(HELPER_GET_PRANDOM_U32),
            raw(MOD64_IMM, 0, 0, 0, 1000),
            Insn::Jump { code: JGE_IMM, dst: 0, imm: i32::from(imp.reorder_permille), label: PASS },
        ]);
        p.extend(count(map_fd, COUNT_REORDERED, C3));
        p.extend([
            mov_imm(1, i32::try_from(tap).unwrap_or(0)), // r1 = tap ifindex
            mov_imm(2, 0),                               // r2 = flags: its egress
            call(HELPER_REDIRECT),                       // r0 = TC_ACT_REDIRECT
            raw(EXIT, 0, 0, 0, 0),
        ]);
    }
    p.push(Insn::Label(PASS));
    p.extend(exit_with(TC_ACT_OK));
    if imp.loss_permille > 0 {
        // (The verifier refuses unreachable code: only with loss.)
        p.push(Insn::Label(DROP));
        p.extend(count(map_fd, COUNT_DROPPED, C4));
        p.extend(exit_with(TC_ACT_SHOT));
    }
    p
}

/// The program on a delay-line tap: mark the frame and send it to `dev` (its egress, or
/// its ingress with `BPF_F_INGRESS`).
fn return_program(dev: u32, flags: i32) -> Vec<Insn> {
    vec![
        // skb->mark = DELAYED_MARK (a register store: the verifier refuses immediate
        // stores into the context).
        mov_imm(2, DELAYED_MARK),
        raw(STX_W, 1, 2, SKB_MARK, 0),
        mov_imm(1, i32::try_from(dev).unwrap_or(0)),
        mov_imm(2, flags),
        call(HELPER_REDIRECT),
        raw(EXIT, 0, 0, 0, 0),
    ]
}

/// Resolves labels and encodes the program.
fn assemble(program: &[Insn]) -> Result<Vec<u64>, LabError> {
    // Slot of every instruction and label.
    let mut slot = 0usize;
    let mut labels = std::collections::HashMap::new();
    for insn in program {
        match insn {
            Insn::Label(l) => {
                labels.insert(*l, slot);
            }
            Insn::LoadMap { .. } => slot += 2,
            _ => slot += 1,
        }
    }
    let encode = |code: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        let [o0, o1] = off.to_le_bytes();
        let [i0, i1, i2, i3] = imm.to_le_bytes();
        u64::from_le_bytes([code, (src << 4) | (dst & 0xf), o0, o1, i0, i1, i2, i3])
    };
    let mut out = Vec::with_capacity(slot);
    for insn in program {
        match *insn {
            Insn::Raw { code, dst, src, off, imm } => out.push(encode(code, dst, src, off, imm)),
            Insn::Jump { code, dst, imm, label } => {
                let target = *labels
                    .get(&label)
                    .ok_or_else(|| lab_error(format!("BPF label {label} is not defined")))?;
                let here = out.len() + 1;
                let distance = i64::try_from(target).unwrap_or(i64::MAX)
                    - i64::try_from(here).unwrap_or(i64::MAX);
                let off = i16::try_from(distance).map_err(|_| lab_error("BPF jump too far"))?;
                // A register compare takes its register in `src` (kept in `imm` above).
                let (src, imm) =
                    if code & 0x08 != 0 { (u8::try_from(imm).unwrap_or(0), 0) } else { (0, imm) };
                out.push(encode(code, dst, src, off, imm));
            }
            Insn::LoadMap { dst, fd } => {
                out.push(encode(0x18, dst, 1, 0, fd)); // ld_imm64, BPF_PSEUDO_MAP_FD
                out.push(0);
            }
            Insn::Label(_) => {}
        }
    }
    Ok(out)
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-padded bpf_attr of the size we pass; the kernel reads (and
    // for some commands writes) only it and the buffers it points to, which outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn fd_from(r: i64) -> Result<OwnedFd, LabError> {
    let fd = i32::try_from(r).map_err(|_| lab_error("bpf returned a bad fd"))?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An array of four u64 counters.
fn create_counter_map() -> Result<OwnedFd, LabError> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_MAP_TYPE_ARRAY.to_ne_bytes()); // map_type
    attr[4..8].copy_from_slice(&4u32.to_ne_bytes()); // key_size
    attr[8..12].copy_from_slice(&8u32.to_ne_bytes()); // value_size
    attr[12..16].copy_from_slice(&4u32.to_ne_bytes()); // max_entries
    let r = bpf(BPF_MAP_CREATE, &mut attr)
        .map_err(|e| lab_error(format!("creating a counter map: {e}")))?;
    fd_from(r)
}

fn map_lookup(map: &OwnedFd, key: u32) -> Result<u64, LabError> {
    let mut value = 0u64;
    let mut attr = [0u8; 128];
    let fd = u32::try_from(map.as_raw_fd()).unwrap_or(0);
    attr[0..4].copy_from_slice(&fd.to_ne_bytes());
    attr[8..16].copy_from_slice(&(std::ptr::addr_of!(key) as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(std::ptr::addr_of_mut!(value) as u64).to_ne_bytes());
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)
        .map_err(|e| lab_error(format!("reading a counter: {e}")))?;
    Ok(value)
}

/// Loads a `BPF_PROG_TYPE_SCHED_CLS` program; the verifier's log comes with a refusal.
fn load_sched_cls(program: &[Insn], name: &str) -> Result<OwnedFd, LabError> {
    let insns = assemble(program)?;
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    let count = u32::try_from(insns.len()).unwrap_or(u32::MAX);
    attr[4..8].copy_from_slice(&count.to_ne_bytes()); // insn_cnt
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes()); // insns
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes()); // license
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes()); // log_level
    let log_size = u32::try_from(log.len()).unwrap_or(0);
    attr[28..32].copy_from_slice(&log_size.to_ne_bytes()); // log_size
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes()); // log_buf
    let name = name.as_bytes();
    attr[48..48 + name.len().min(15)].copy_from_slice(&name[..name.len().min(15)]); // prog_name
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(r) => fd_from(r),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(lab_error(format!(
                "loading the impairment program: {e}; verifier: {}",
                String::from_utf8_lossy(&log[..end])
            )))
        }
    }
}

/// Attaches `prog` to `ifindex`'s tcx hook `attach_type` through a BPF link (closing the
/// returned fd detaches it).
fn attach_tcx(prog: &OwnedFd, ifindex: u32, attach_type: u32) -> Result<OwnedFd, LabError> {
    let mut attr = [0u8; 128];
    let prog_fd = u32::try_from(prog.as_raw_fd()).unwrap_or(0);
    attr[0..4].copy_from_slice(&prog_fd.to_ne_bytes()); // prog_fd
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes()); // target_ifindex
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes()); // attach_type
    let r = bpf(BPF_LINK_CREATE, &mut attr).map_err(|e| {
        lab_error(format!("attaching to tcx hook {attach_type} of interface {ifindex}: {e}"))
    })?;
    fd_from(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_assemble_with_every_label_resolved() {
        let imp = Impairment { loss_permille: 50, reorder_permille: 10, ..Impairment::NONE };
        let code = assemble(&impair_program(&imp, 3, Some(7))).expect("assembles");
        // Every jump lands inside the program.
        let len = i64::try_from(code.len()).expect("small");
        for (i, insn) in code.iter().enumerate() {
            let [op, _, o0, o1, ..] = insn.to_le_bytes();
            if op & 0x07 == 0x05 && op != CALL && op != EXIT {
                let off = i64::from(i16::from_le_bytes([o0, o1]));
                let target = i64::try_from(i).expect("small") + 1 + off;
                assert!((0..len).contains(&target), "jump at {i} to {target}");
            }
        }
        assert_eq!(code.last().map(|i| i.to_le_bytes()[0]), Some(EXIT));
        assert!(assemble(&return_program(4, BPF_F_INGRESS)).is_ok());
    }
}
