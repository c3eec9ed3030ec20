//! A raw-frame tool for the adversarial tests: what an attacker on the wire sends.
//!
//! - [`RawLink`]: an AF_PACKET socket on the client's veth end, inside the client namespace.
//!   It sends crafted Ethernet frames in batches (`sendmmsg`) and receives, in batches
//!   (`recvmmsg`), only the TCP frames the shield sends from its port (a classic BPF filter
//!   in the kernel), into a bounded socket buffer.
//! - [`Wire`] builds frames with etherparse; [`parse`] reads the shield's.
//! - [`Flood`] runs many SYN-cookie handshakes at once from chosen source addresses and
//!   ports (SYN, read the cookie SYN-ACK, then whatever the test sends instead of or after
//!   the third ACK), a bounded number in flight, bounded in packets and in seconds.
//! - [`RawConn`] is one connection driven by hand: sequence numbers, timestamps, captures.
//!
//! Source addresses of the raw clients are addresses the client namespace does NOT own: its
//! kernel then drops what the shield sends them without answering (no RST from a stack that
//! knows nothing of the handshake), as a silent attacker would. The shield never needs to
//! resolve them: it answers from XDP (MACs swapped) and from userspace along the route of the
//! frame that came in.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etherparse::{
    LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice,
};
use tcp_user::lab::{CLIENT_IF, Lab, Netns, SHIELD_IF};

/// Frames per `sendmmsg` / `recvmmsg`.
pub const BATCH: usize = 64;
/// Receive buffer of a link: bounded, large enough for a window of SYN-ACKs.
pub const RCVBUF: usize = 4 << 20;
/// Largest frame read (the lab's MTU is 1500); longer ones are cut.
const FRAME_MAX: usize = 2048;
/// `PACKET_IGNORE_OUTGOING` (include/uapi/linux/if_packet.h).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// An AF_PACKET socket on one interface of a namespace.
pub struct RawLink {
    fd: OwnedFd,
    bufs: Vec<[u8; FRAME_MAX]>,
}

impl RawLink {
    /// A socket on `ifname` in `ns` that sends frames and receives the TCP frames (IPv4 or
    /// IPv6, no IP options) whose source port is `server_port`, arriving at the interface.
    pub fn open(ns: &Netns, ifname: &str, server_port: u16) -> RawLink {
        let ifname = ifname.to_owned();
        ns.enter(move || open_here(&ifname, Some(server_port))).unwrap()
    }

    /// A socket on `ifname` in `ns` that only sends.
    pub fn sender(ns: &Netns, ifname: &str) -> RawLink {
        let ifname = ifname.to_owned();
        ns.enter(move || open_here(&ifname, None)).unwrap()
    }

    /// Sends every frame, `BATCH` per system call; waits (bounded) while the socket's send
    /// buffer is full.
    pub fn send_all(&self, frames: &[Vec<u8>]) {
        for chunk in frames.chunks(BATCH) {
            let mut sent = 0;
            let mut stalls = 0;
            while sent < chunk.len() {
                let mut iovs: Vec<libc::iovec> = chunk[sent..]
                    .iter()
                    .map(|f| libc::iovec {
                        iov_base: f.as_ptr().cast_mut().cast(),
                        iov_len: f.len(),
                    })
                    .collect();
                let mut msgs = one_iovec_each(&mut iovs);
                let n = u32::try_from(msgs.len()).unwrap();
                // SAFETY: `msgs` points at `iovs`, which point at frames that outlive the call.
                let r = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n, 0) };
                if r > 0 {
                    sent += usize::try_from(r).unwrap();
                    stalls = 0;
                    continue;
                }
                let e = io::Error::last_os_error();
                let full = matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN));
                assert!(full && stalls < 10_000, "sendmmsg on the raw link: {e}");
                stalls += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) {
        self.send_all(&[frame.to_vec()]);
    }

    /// Waits up to `wait` for frames, then hands every frame already queued to `each`
    /// (read `BATCH` at a time). Returns how many there were.
    pub fn recv(&mut self, wait: Duration, mut each: impl FnMut(&[u8])) -> usize {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&raw mut pfd, 1, ms) } <= 0 {
            return 0;
        }
        let mut total = 0;
        loop {
            let mut iovs: Vec<libc::iovec> = self
                .bufs
                .iter_mut()
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: FRAME_MAX })
                .collect();
            let mut msgs = one_iovec_each(&mut iovs);
            let n = u32::try_from(msgs.len()).unwrap();
            // SAFETY: every message points at one of our buffers of FRAME_MAX bytes.
            let r = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            let Ok(got) = usize::try_from(r) else { break };
            for (m, buf) in msgs.iter().zip(&self.bufs).take(got) {
                let len = usize::try_from(m.msg_len).unwrap().min(FRAME_MAX);
                each(&buf[..len]);
            }
            total += got;
            if got < BATCH {
                break;
            }
        }
        total
    }

    /// Every frame that arrives within `wait` (at least one wait; more while frames come).
    pub fn capture(&mut self, wait: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let end = Instant::now() + wait;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.recv(left, |f| out.extend(parse(f)));
        }
        out
    }
}

/// A [`RawLink`] receiving on a thread of its own until stopped.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Received>>,
}

impl Capture {
    /// Captures every frame `link` receives from now on.
    pub fn start(mut link: RawLink) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                link.recv(Duration::from_millis(20), |f| seen.extend(parse(f)));
            }
            seen
        });
        Capture { stop, thread }
    }

    /// Stops and returns what was captured.
    pub fn stop(self) -> Vec<Received> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap();
    // SAFETY: `value` is a valid T of `len` bytes for the duration of the call.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, std::ptr::from_ref(value).cast(), len)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Opens the socket in the calling thread's namespace.
fn open_here(ifname: &str, server_port: Option<u16>) -> RawLink {
    // Protocol 0: the socket receives nothing until it is bound with a protocol, so the
    // filter is in place before the first frame is queued.
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let c_if = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c_if.as_ptr()) };
    assert_ne!(ifindex, 0, "no interface {ifname}");
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    addr.sll_ifindex = i32::try_from(ifindex).unwrap();
    if let Some(port) = server_port {
        let filter = shield_port_filter(port);
        let prog = libc::sock_fprog {
            len: u16::try_from(filter.len()).unwrap(),
            filter: filter.as_ptr().cast_mut(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).unwrap();
        let rcvbuf = libc::c_int::try_from(RCVBUF).unwrap();
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).unwrap();
        // Our own frames never pass the filter anyway; this skips the copy.
        let _ = setsockopt(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1 as &libc::c_int);
        addr.sll_protocol = u16::try_from(libc::ETH_P_ALL).unwrap().to_be();
    }
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap();
    // SAFETY: a valid sockaddr_ll of `len` bytes.
    let r = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    assert_eq!(r, 0, "bind to {ifname}: {}", io::Error::last_os_error());
    RawLink { fd, bufs: vec![[0u8; FRAME_MAX]; BATCH] }
}

/// A classic BPF program: accept IPv4 (without options) or IPv6 TCP frames whose source
/// port is `port`, drop everything else.
fn shield_port_filter(port: u16) -> Vec<libc::sock_filter> {
    const LDH_ABS: u16 = 0x28;
    const LDB_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let port = u32::from(port);
    vec![
        op(LDH_ABS, 0, 0, 12),        // 0: EtherType
        op(JEQ_K, 0, 4, 0x0800),      // 1: IPv4? else 6
        op(LDB_ABS, 0, 0, 14 + 9),    // 2: protocol
        op(JEQ_K, 0, 8, 6),           // 3: TCP? else drop
        op(LDH_ABS, 0, 0, 14 + 20),   // 4: source port
        op(JEQ_K, 5, 6, port),        // 5: ours? accept : drop
        op(JEQ_K, 0, 5, 0x86dd),      // 6: IPv6? else drop
        op(LDB_ABS, 0, 0, 14 + 6),    // 7: next header
        op(JEQ_K, 0, 3, 6),           // 8: TCP? else drop
        op(LDH_ABS, 0, 0, 14 + 40),   // 9: source port
        op(JEQ_K, 0, 1, port),        // 10: ours? accept : drop
        op(RET_K, 0, 0, 0x0004_0000), // 11: accept
        op(RET_K, 0, 0, 0),           // 12: drop
    ]
}

/// A TCP segment as the tests write it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(clippy::struct_excessive_bools, reason = "TCP's flags, one bit each in the header")]
pub struct Segment {
    pub seq: u32,
    /// The ACK flag and number.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    pub payload: Vec<u8>,
}

/// Both ends of the lab's link at layer 2, and the shield's service address.
#[derive(Clone, Copy, Debug)]
pub struct Wire {
    pub client_mac: [u8; 6],
    pub shield_mac: [u8; 6],
    /// The shield's address and protected port (one family per flood).
    pub server: SocketAddr,
}

impl Wire {
    /// The lab's MAC addresses, towards `server`.
    pub fn of(lab: &Lab, server: SocketAddr) -> Wire {
        Wire {
            client_mac: Lab::mac(&lab.client, CLIENT_IF).unwrap(),
            shield_mac: Lab::mac(&lab.shield, SHIELD_IF).unwrap(),
            server,
        }
    }

    /// The frame of `seg` from `from` to the server, from the client's MAC address.
    pub fn frame(&self, from: SocketAddr, seg: &Segment) -> Vec<u8> {
        self.frame_from_mac(self.client_mac, from, seg)
    }

    /// The same from another source MAC address.
    pub fn frame_from_mac(&self, mac: [u8; 6], from: SocketAddr, seg: &Segment) -> Vec<u8> {
        let mut tcp = TcpHeader::new(from.port(), self.server.port(), seg.seq, seg.window);
        tcp.syn = seg.syn;
        tcp.fin = seg.fin;
        tcp.rst = seg.rst;
        tcp.psh = seg.psh;
        if let Some(ack) = seg.ack {
            tcp.ack = true;
            tcp.acknowledgment_number = ack;
        }
        let mut options = Vec::new();
        if let Some(mss) = seg.mss {
            options.push(TcpOptionElement::MaximumSegmentSize(mss));
        }
        if seg.sack_permitted {
            options.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
        }
        if let Some((tsval, tsecr)) = seg.timestamp {
            if !seg.sack_permitted {
                options.extend([TcpOptionElement::Noop, TcpOptionElement::Noop]);
            }
            options.push(TcpOptionElement::Timestamp(tsval, tsecr));
        }
        if let Some(ws) = seg.wscale {
            options.extend([TcpOptionElement::Noop, TcpOptionElement::WindowScale(ws)]);
        }
        tcp.set_options(&options).unwrap();
        let builder = PacketBuilder::ethernet2(mac, self.shield_mac);
        let mut out = Vec::with_capacity(128 + seg.payload.len());
        match (from.ip(), self.server.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => builder
                .ipv4(s.octets(), d.octets(), 64)
                .tcp_header(tcp)
                .write(&mut out, &seg.payload),
            (IpAddr::V6(s), IpAddr::V6(d)) => builder
                .ipv6(s.octets(), d.octets(), 64)
                .tcp_header(tcp)
                .write(&mut out, &seg.payload),
            _ => panic!("{from} and {} are of different families", self.server),
        }
        .unwrap();
        out
    }
}

/// Offset of the TCP checksum in a frame [`Wire`] built (no VLAN, no IP options).
fn tcp_checksum_at(frame: &[u8]) -> usize {
    let ip_len = if frame[12..14] == [0x86, 0xdd] { 40 } else { 20 };
    14 + ip_len + 16
}

/// Makes the TCP checksum of a frame [`Wire`] built wrong (and nothing else).
pub fn corrupt_tcp_checksum(frame: &mut [u8]) {
    let at = tcp_checksum_at(frame);
    frame[at] ^= 0x5a;
}

/// A TCP frame the shield sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(clippy::struct_excessive_bools, reason = "TCP's flags, one bit each in the header")]
pub struct Received {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl Received {
    /// Sequence space the segment takes (payload, SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        u32::try_from(self.payload.len()).unwrap() + u32::from(self.syn) + u32::from(self.fin)
    }

    /// Flags as tcpdump writes them (`S.`, `.`, `F.`, `R`, ...), for messages.
    pub fn flags(&self) -> String {
        let mut s = String::new();
        for (on, c) in [(self.syn, 'S'), (self.fin, 'F'), (self.rst, 'R'), (self.ack_flag, '.')] {
            if on {
                s.push(c);
            }
        }
        s
    }
}

/// Reads an Ethernet frame carrying TCP; `None` for anything else.
pub fn parse(frame: &[u8]) -> Option<Received> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else { return None };
    let (src, dst): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            (ip.header().source_addr().into(), ip.header().destination_addr().into())
        }
        Some(NetSlice::Ipv6(ip)) => {
            (ip.header().source_addr().into(), ip.header().destination_addr().into())
        }
        None => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else { return None };
    let timestamp = tcp.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::Timestamp(v, e)) => Some((v, e)),
        _ => None,
    });
    Some(Received {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        from: SocketAddr::new(src, tcp.source_port()),
        to: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_size(),
        timestamp,
        payload: tcp.payload().to_vec(),
    })
}

/// What a SYN offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// Our first TSval, if the SYN carries timestamps.
    pub tsval: Option<u32>,
}

impl Shape {
    /// A SYN without options (the cheapest handshake; the cookie then carries only the MSS).
    pub const PLAIN: Shape = Shape { mss: None, wscale: None, sack_permitted: false, tsval: None };
    /// A SYN like Linux's: MSS, SACK permitted, timestamps, window scale 7.
    pub const LINUX: Shape =
        Shape { mss: Some(1460), wscale: Some(7), sack_permitted: true, tsval: Some(1_000_000) };

    /// The SYN of a handshake whose ISN is `isn`.
    pub fn syn(&self, isn: u32) -> Segment {
        Segment {
            seq: isn,
            syn: true,
            window: 64_240,
            mss: self.mss,
            wscale: self.wscale,
            sack_permitted: self.sack_permitted,
            timestamp: self.tsval.map(|v| (v, 0)),
            ..Segment::default()
        }
    }
}

/// A handshake whose cookie SYN-ACK came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Our address and port.
    pub client: SocketAddr,
    /// Our ISN.
    pub client_isn: u32,
    /// The shield's ISN: the cookie.
    pub server_isn: u32,
    /// Our TSval in the SYN and the SYN-ACK's TSval (the cookie's timestamp), if both
    /// carried timestamps.
    pub timestamps: Option<(u32, u32)>,
}

impl Opened {
    /// The third ACK: `seq = ISN + 1`, `ack = cookie + 1`, the SYN-ACK's TSval echoed.
    pub fn third_ack(&self) -> Segment {
        Segment {
            seq: self.client_isn.wrapping_add(1),
            ack: Some(self.server_isn.wrapping_add(1)),
            window: 502,
            timestamp: self.timestamps.map(|(ours, theirs)| (ours.wrapping_add(1), theirs)),
            ..Segment::default()
        }
    }

    /// A RST right behind the third ACK (in window: `seq = ISN + 1`).
    pub fn rst(&self) -> Segment {
        Segment {
            seq: self.client_isn.wrapping_add(1),
            rst: true,
            timestamp: self.timestamps.map(|(ours, theirs)| (ours.wrapping_add(2), theirs)),
            ..Segment::default()
        }
    }
}

/// What a [`Flood`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Handshakes whose SYN-ACK came back (each handed to the test once).
    pub opened: u64,
    /// SYNs sent, retries included.
    pub syns: u64,
    /// SYNs sent again because no SYN-ACK came within [`Flood::retry_after`].
    pub syn_retries: u64,
    /// Handshakes given up after [`Flood::tries`] SYNs.
    pub gave_up: u64,
    /// Frames the test sent after the SYN-ACKs.
    pub followups: u64,
    pub took: Duration,
}

impl FloodReport {
    /// Handshakes per second.
    #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
    pub fn rate(&self) -> f64 {
        self.opened as f64 / self.took.as_secs_f64()
    }
}

/// Many handshakes at once through a [`RawLink`].
pub struct Flood<'a> {
    pub link: &'a mut RawLink,
    pub wire: Wire,
    pub shape: Shape,
    /// Most handshakes waiting for their SYN-ACK at once: bounds the frames in flight (a veth
    /// with XDP holds 256 frames per queue, and drops beyond).
    pub window: usize,
    pub retry_after: Duration,
    /// SYNs per handshake at most.
    pub tries: u32,
    /// The flood fails (panics) if it takes longer.
    pub deadline: Duration,
}

struct Pending {
    isn: u32,
    sent: Instant,
    tries: u32,
}

impl<'a> Flood<'a> {
    pub fn new(link: &'a mut RawLink, wire: Wire, shape: Shape) -> Flood<'a> {
        Flood {
            link,
            wire,
            shape,
            window: 128,
            retry_after: Duration::from_millis(500),
            tries: 5,
            deadline: Duration::from_mins(2),
        }
    }

    /// A handshake from each of `sources` (bounded: the iterator's length is the packet
    /// bound). For each SYN-ACK, `after` writes the frames to send in reply (the third ACK,
    /// a bad one, a RST, nothing).
    pub fn run(
        &mut self,
        sources: impl IntoIterator<Item = SocketAddr>,
        mut after: impl FnMut(&Opened, &mut Vec<Vec<u8>>),
    ) -> FloodReport {
        let start = Instant::now();
        let mut report = FloodReport::default();
        let mut sources = sources.into_iter().peekable();
        let mut pending: HashMap<SocketAddr, Pending> = HashMap::new();
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(BATCH * 4);
        let mut isn_state: u32 = 0x2545_f491;
        let mut last_scan = Instant::now();
        let mut answers = Vec::new();
        while !(pending.is_empty() && sources.peek().is_none()) {
            assert!(
                start.elapsed() < self.deadline,
                "the flood took longer than {:?}: {report:?}",
                self.deadline
            );
            while pending.len() < self.window {
                let Some(src) = sources.next() else { break };
                isn_state ^= isn_state << 13;
                isn_state ^= isn_state >> 17;
                isn_state ^= isn_state << 5;
                let isn = isn_state;
                out.push(self.wire.frame(src, &self.shape.syn(isn)));
                report.syns += 1;
                pending.insert(src, Pending { isn, sent: Instant::now(), tries: 1 });
            }
            self.link.send_all(&out);
            out.clear();
            self.link.recv(Duration::from_millis(5), |f| {
                if let Some(r) = parse(f)
                    && r.syn
                    && r.ack_flag
                {
                    answers.push(r);
                }
            });
            for r in answers.drain(..) {
                if r.from != self.wire.server {
                    continue;
                }
                let Some(p) = pending.get(&r.to) else { continue };
                if r.ack != p.isn.wrapping_add(1) {
                    continue;
                }
                let opened = Opened {
                    client: r.to,
                    client_isn: p.isn,
                    server_isn: r.seq,
                    timestamps: self.shape.tsval.zip(r.timestamp.map(|(tsval, _)| tsval)),
                };
                pending.remove(&r.to);
                report.opened += 1;
                let before = out.len();
                after(&opened, &mut out);
                report.followups += (out.len() - before) as u64;
                if out.len() >= BATCH {
                    self.link.send_all(&out);
                    out.clear();
                }
            }
            if last_scan.elapsed() >= self.retry_after / 4 {
                last_scan = Instant::now();
                let (retry_after, tries) = (self.retry_after, self.tries);
                pending.retain(|src, p| {
                    if p.sent.elapsed() < retry_after {
                        return true;
                    }
                    if p.tries >= tries {
                        report.gave_up += 1;
                        return false;
                    }
                    p.tries += 1;
                    p.sent = Instant::now();
                    out.push(self.wire.frame(*src, &self.shape.syn(p.isn)));
                    report.syns += 1;
                    report.syn_retries += 1;
                    true
                });
            }
        }
        self.link.send_all(&out);
        report.took = start.elapsed();
        report
    }
}

/// `count` source sockets: `per_address` ports (from 1024 up) of each address in turn.
pub fn sources(addresses: &[IpAddr], per_address: u16, count: usize) -> Vec<SocketAddr> {
    assert!(per_address <= u16::MAX - 1024);
    let all = addresses.len() * usize::from(per_address);
    assert!(count <= all, "{count} sources asked of {all}");
    // Interleave addresses, so the sources of a window are spread over them.
    (0..count)
        .map(|i| {
            let a = addresses[i % addresses.len()];
            let port = 1024 + u16::try_from(i / addresses.len()).unwrap();
            SocketAddr::new(a, port)
        })
        .collect()
}

/// One connection driven frame by frame.
#[derive(Debug)]
pub struct RawConn {
    pub wire: Wire,
    pub opened: Opened,
    /// The frame of the third ACK, as sent (to replay it).
    pub third_ack: Vec<u8>,
    /// Our next sequence number.
    pub snd_nxt: u32,
    /// The shield's next sequence number (what we acknowledge).
    pub rcv_nxt: u32,
    /// Our next TSval and the shield's latest, if the connection has timestamps.
    pub ts: Option<(u32, u32)>,
    /// In-order payload received so far.
    pub received: Vec<u8>,
    pub fin_received: bool,
}

impl RawConn {
    /// Opens a connection from `from` (SYN, cookie SYN-ACK, third ACK), bounded in tries.
    pub fn open(link: &mut RawLink, wire: Wire, from: SocketAddr, shape: Shape) -> RawConn {
        let mut flood = Flood::new(link, wire, shape);
        flood.deadline = Duration::from_secs(20);
        let mut opened = None;
        let mut third_ack = Vec::new();
        let report = flood.run([from], |o, out| {
            third_ack = wire.frame(o.client, &o.third_ack());
            out.push(third_ack.clone());
            opened = Some(*o);
        });
        let opened = opened.unwrap_or_else(|| panic!("no SYN-ACK for {from}: {report:?}"));
        let ack = opened.third_ack();
        RawConn {
            wire,
            opened,
            third_ack,
            snd_nxt: ack.seq,
            rcv_nxt: opened.server_isn.wrapping_add(1),
            ts: ack.timestamp,
            received: Vec::new(),
            fin_received: false,
        }
    }

    /// A segment of this connection at our current numbers, with ACK.
    pub fn segment(&mut self) -> Segment {
        let timestamp = self.ts.map(|(ours, theirs)| {
            let next = ours.wrapping_add(1);
            self.ts = Some((next, theirs));
            (next, theirs)
        });
        Segment {
            seq: self.snd_nxt,
            ack: Some(self.rcv_nxt),
            window: 502,
            timestamp,
            ..Segment::default()
        }
    }

    /// Sends `data` (PSH, ACK).
    pub fn send(&mut self, link: &RawLink, data: &[u8]) {
        let seg = Segment { psh: true, payload: data.to_vec(), ..self.segment() };
        self.snd_nxt = self.snd_nxt.wrapping_add(u32::try_from(data.len()).unwrap());
        link.send(&self.wire.frame(self.opened.client, &seg));
    }

    /// Acknowledges what arrived.
    pub fn ack(&mut self, link: &RawLink) {
        let seg = self.segment();
        link.send(&self.wire.frame(self.opened.client, &seg));
    }

    /// Sends our FIN (with ACK).
    pub fn fin(&mut self, link: &RawLink) {
        let seg = Segment { fin: true, ..self.segment() };
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        link.send(&self.wire.frame(self.opened.client, &seg));
    }

    /// Sends a RST at our next sequence number.
    pub fn rst(&mut self, link: &RawLink) {
        let seg = Segment { rst: true, ack: None, ..self.segment() };
        link.send(&self.wire.frame(self.opened.client, &seg));
    }

    /// Reads the shield's frames for this connection until `done` holds (or `limit`
    /// passes), taking in-order data and FIN and acknowledging them. Returns every frame
    /// seen for the connection.
    pub fn receive_until(
        &mut self,
        link: &mut RawLink,
        limit: Duration,
        mut done: impl FnMut(&RawConn) -> bool,
    ) -> Vec<Received> {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while !done(self) {
            let Some(left) = end.checked_duration_since(Instant::now()) else { break };
            let mut frames = Vec::new();
            link.recv(left.min(Duration::from_millis(50)), |f| frames.extend(parse(f)));
            let mut advanced = false;
            for r in frames.into_iter().filter(|r| r.to == self.opened.client) {
                if let (Some((ours, _)), Some((tsval, _))) = (self.ts, r.timestamp) {
                    self.ts = Some((ours, tsval));
                }
                if r.seq == self.rcv_nxt && (!r.payload.is_empty() || r.fin) {
                    self.received.extend_from_slice(&r.payload);
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(r.seq_len());
                    self.fin_received |= r.fin;
                    advanced = true;
                }
                seen.push(r);
            }
            if advanced {
                self.ack(link);
            }
        }
        seen
    }
}

/// One message header per iovec, each pointing at its own (no name, no control), for
/// `sendmmsg` and `recvmmsg`. The headers point into `iovs`, which must outlive them.
fn one_iovec_each(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: zeroed mmsghdr is valid (no name, no control).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = std::ptr::from_mut(iov);
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}
