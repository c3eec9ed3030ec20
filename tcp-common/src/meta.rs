//! Metadata the XDP program puts in front of every frame it redirects to AF_XDP, so that
//! userspace never reads the flow map on the packet path.
//!
//! # Where it is
//!
//! The XDP program grows the frame's metadata area by 32 bytes (`bpf_xdp_adjust_meta`) and
//! writes one [`RxMeta`] there, ending where the frame starts. AF_XDP copies the metadata
//! together with the frame (copy mode: `xsk_copy_xdp` in net/xdp/xsk.c copies from
//! `data_meta`; zero-copy: the metadata is already in the UMEM chunk), so in the UMEM:
//!
//! ```text
//!  UMEM chunk
//!  ┌───────────────┬──────────────────────────┬──────────────┬───────────────────────────┐
//!  │ umem headroom │ XDP_PACKET_HEADROOM (256) ...            │ frame (desc.len bytes)    │
//!  │ (XDP_UMEM_REG)│                          │ RxMeta (32)  │                           │
//!  └───────────────┴──────────────────────────┴──────────────┴───────────────────────────┘
//!                                             ^ desc.addr - 32 ^ desc.addr
//! ```
//!
//! The kernel places every received frame `XDP_PACKET_HEADROOM` (256) bytes past the chunk's
//! start plus the UMEM headroom, so the 32 bytes before `desc.addr` are always inside the same
//! chunk: [`RxMeta::read`] takes the chunk's bytes up to `desc.addr` and looks at the last 32.
//! Verified on Linux 6.18, veth, copy mode, native and generic XDP (tcp-user/tests/xdp_meta.rs).
//!
//! # Stale bytes
//!
//! Nothing marks a frame as carrying metadata: when `bpf_xdp_adjust_meta` fails (the XDP
//! program counts `redirect_without_meta` and redirects anyway), or for a frame another program
//! redirected, the 32 bytes are whatever the chunk held before. Hence the rules for userspace:
//!
//! 1. zero the tag after reading it ([`RxMeta::clear`]): a chunk goes back to the fill ring
//!    without a tag that a later frame could inherit;
//! 2. a chunk that carried a TX frame (whose bytes a peer may have chosen: an echo) must have
//!    the 32 bytes before its RX frame position zeroed before it goes to the fill ring, or TX
//!    frames must never cover that position;
//! 3. a frame without a valid tag is not refused: its flow is looked up in the map instead.
//!
//! Integers are in the host's byte order (the XDP program runs on the same machine).

use crate::flow::FlowValue;

/// # Kinds, and what userspace does with them
///
/// - NEW_FLOW: a third ACK whose cookie and checksum validated; XDP inserted the flow.
/// - REOPEN: a bare ACK with a valid cookie for a tuple in TIME-WAIT; userspace decides (RFC
///   6191) and rewrites the entry.
/// - FLOW: a segment of a tuple in the flow map: an established connection, a TIME-WAIT record
///   or a half-open connection ([`FlowValue::HALF_OPEN`]). Also a **SYN** for a half-open
///   tuple (a retransmitted SYN: the shard answers with its SYN-ACK again) and, when
///   userspace marks TIME-WAIT entries (`ConfigFlags::TIME_WAIT_MARKED`), for any tuple whose
///   entry is not marked TIME-WAIT (RFC 5961 section 4: the engine answers with a challenge
///   ACK). A SYN for a TIME-WAIT tuple is answered like a new one (cookie or stateful), its
///   third ACK then comes as REOPEN (cookie) or FLOW (stateful).
/// - SYN: a SYN for a tuple not in the map, in stateful or adaptive mode (`adaptive`), while
///   the RX queue's half-open table has room; `flow` is what the SYN offered
///   ([`FlowValue::syn_offer`]). The XDP program checked its flags, length, checksum,
///   options and addresses; it did not write the map. Userspace answers it statefully: it
///   inserts the tuple with [`FlowValue::HALF_OPEN`] (so the third ACK and retransmitted SYNs
///   reach it as FLOW) and sends its SYN-ACK.
///
/// Userspace keeps `SYNSHIELD_HALF_OPEN_ROOM[queue]` at 1 while the queue's shard can take
/// SYNs and at 0 once its half-open table is full (or the shard is not running): XDP then
/// answers that queue's SYNs with cookies (adaptive) or drops them (stateful). The flag is
/// read per SYN, and SYNs already in the RX ring when it changes still arrive: set it to 0
/// while the table still has room for a ring's worth, or answer the overflow with cookies in
/// userspace (`tcp_common::cookie`, `synack`).
///
/// What the XDP program knows about a frame it hands to AF_XDP: 32 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxMeta {
    /// [`RxMeta::MAGIC`] | one of [`RxMeta::NEW_FLOW`], [`RxMeta::REOPEN`], [`RxMeta::FLOW`],
    /// [`RxMeta::SYN`].
    pub tag: u32,
    /// NEW_FLOW: the flow the cookie established, as inserted into the map (its `queue` is the
    /// RX queue the ACK arrived on). REOPEN: the flow the NEW cookie decodes to; the map still
    /// holds the old connection's entry. FLOW: the map's value (its `queue` names the owner).
    /// SYN: what the SYN offered ([`FlowValue::syn_offer`], `queue` the RX queue).
    pub flow: FlowValue,
}

/// What kind of frame the metadata describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxKind {
    /// A third ACK whose cookie validated; the XDP program inserted the flow.
    NewFlow,
    /// A bare ACK (no SYN, FIN or RST) with a valid cookie for a tuple whose entry carries
    /// [`FlowValue::TIME_WAIT`]. XDP did not write the map: userspace decides (RFC 6191) and
    /// rewrites the entry itself.
    Reopen,
    /// A segment of a known flow (a SYN included: see [`RxMeta`]).
    Flow,
    /// A SYN to answer statefully (stateful or adaptive mode).
    Syn,
}

impl RxMeta {
    /// Size in bytes: what the XDP program reserves with `bpf_xdp_adjust_meta` (the kernel's
    /// limit for metadata is 32).
    pub const LEN: usize = 32;
    /// High 24 bits of a valid tag ("SS\x5b" + kind).
    pub const MAGIC: u32 = 0x5353_5b00;
    /// The kind bits of the tag.
    pub const KIND_MASK: u32 = 0xff;
    /// Kind: a validated third ACK, flow inserted.
    pub const NEW_FLOW: u32 = 1;
    /// Kind: a reopen candidate for a tuple in TIME-WAIT.
    pub const REOPEN: u32 = 2;
    /// Kind: a segment of a known flow.
    pub const FLOW: u32 = 3;
    /// Kind: a SYN for userspace to answer statefully.
    pub const SYN: u32 = 4;

    /// The metadata for a frame of `kind` ([`RxMeta::NEW_FLOW`], ...).
    #[inline(always)]
    #[must_use]
    pub const fn new(kind: u32, flow: FlowValue) -> RxMeta {
        RxMeta { tag: RxMeta::MAGIC | kind, flow }
    }

    /// The kind, if the tag is valid.
    #[must_use]
    pub const fn kind(&self) -> Option<RxKind> {
        if self.tag & !RxMeta::KIND_MASK != RxMeta::MAGIC {
            return None;
        }
        match self.tag & RxMeta::KIND_MASK {
            RxMeta::NEW_FLOW => Some(RxKind::NewFlow),
            RxMeta::REOPEN => Some(RxKind::Reopen),
            RxMeta::FLOW => Some(RxKind::Flow),
            RxMeta::SYN => Some(RxKind::Syn),
            _ => None,
        }
    }

    /// Reads the metadata in front of a frame. `before_frame` is the UMEM up to the frame
    /// (`umem[chunk_start..desc.addr]`); its last 32 bytes are the metadata. `None` when they
    /// do not hold a valid tag (no metadata, or stale bytes: see the module docs) or when
    /// fewer than 32 bytes are given.
    #[must_use]
    pub fn read(before_frame: &[u8]) -> Option<(RxKind, FlowValue)> {
        let start = before_frame.len().checked_sub(RxMeta::LEN)?;
        let b = before_frame.get(start..)?;
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
        };
        let meta = RxMeta {
            tag: u32_at(0)?,
            flow: FlowValue {
                server_isn: u32_at(4)?,
                client_isn: u32_at(8)?,
                ts_recent: u32_at(12)?,
                ts_synack: u32_at(16)?,
                ts_offset: u32_at(20)?,
                mss: u16_at(24)?,
                peer_window: u16_at(26)?,
                peer_wscale: *b.get(28)?,
                local_wscale: *b.get(29)?,
                flags: *b.get(30)?,
                queue: *b.get(31)?,
            },
        };
        Some((meta.kind()?, meta.flow))
    }

    /// Zeroes the tag of the metadata in front of a frame (`before_frame` as for
    /// [`RxMeta::read`]), so a reused chunk never shows it again. Does nothing if fewer than
    /// 32 bytes are given.
    pub fn clear(before_frame: &mut [u8]) {
        if let Some(start) = before_frame.len().checked_sub(RxMeta::LEN)
            && let Some(tag) = before_frame.get_mut(start..start + 4)
        {
            tag.fill(0);
        }
    }

    /// The 32 bytes as the XDP program writes them (for tests and userspace fakes).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; RxMeta::LEN] {
        let f = &self.flow;
        let mut b = [0u8; RxMeta::LEN];
        for (i, v) in [self.tag, f.server_isn, f.client_isn, f.ts_recent, f.ts_synack, f.ts_offset]
            .into_iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[24..26].copy_from_slice(&f.mss.to_ne_bytes());
        b[26..28].copy_from_slice(&f.peer_window.to_ne_bytes());
        b[28..32].copy_from_slice(&[f.peer_wscale, f.local_wscale, f.flags, f.queue]);
        b
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, integers only, no padding (32 bytes, alignment 4).
unsafe impl aya::Pod for RxMeta {}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowValue {
        FlowValue {
            server_isn: 1,
            client_isn: 2,
            ts_recent: 3,
            ts_synack: 4,
            ts_offset: 5,
            mss: 1460,
            peer_window: 64240,
            peer_wscale: 7,
            local_wscale: 9,
            flags: FlowValue::TIMESTAMPS | FlowValue::TIME_WAIT,
            queue: 1,
        }
    }

    #[test]
    fn layout_is_32_bytes_without_padding() {
        assert_eq!(core::mem::size_of::<RxMeta>(), RxMeta::LEN);
        assert_eq!(core::mem::align_of::<RxMeta>(), 4);
        let m = RxMeta::new(RxMeta::FLOW, flow());
        // SAFETY: RxMeta is repr(C) plain data without padding.
        let raw: [u8; 32] = unsafe { core::mem::transmute(m) };
        assert_eq!(raw, m.to_bytes());
    }

    #[test]
    fn reads_the_last_32_bytes_before_the_frame() {
        for (kind, want) in [
            (RxMeta::NEW_FLOW, RxKind::NewFlow),
            (RxMeta::REOPEN, RxKind::Reopen),
            (RxMeta::FLOW, RxKind::Flow),
            (RxMeta::SYN, RxKind::Syn),
        ] {
            let mut headroom = [0xaau8; 256];
            headroom[224..].copy_from_slice(&RxMeta::new(kind, flow()).to_bytes());
            assert_eq!(RxMeta::read(&headroom), Some((want, flow())));
            RxMeta::clear(&mut headroom);
            assert_eq!(RxMeta::read(&headroom), None, "cleared");
            assert_eq!(&headroom[228..], &RxMeta::new(kind, flow()).to_bytes()[4..]);
        }
    }

    #[test]
    fn refuses_bad_tags_and_short_headroom() {
        let good = RxMeta::new(RxMeta::FLOW, flow()).to_bytes();
        assert_eq!(RxMeta::read(&good[1..]), None);
        assert_eq!(RxMeta::read(&[]), None);
        for tag in [0, RxMeta::MAGIC, RxMeta::MAGIC | 5, RxMeta::MAGIC ^ 0x100 | 1, u32::MAX] {
            let mut b = good;
            b[..4].copy_from_slice(&tag.to_ne_bytes());
            assert_eq!(RxMeta::read(&b), None, "tag {tag:#x}");
        }
        let mut short = [0u8; 3];
        RxMeta::clear(&mut short);
        assert_eq!(short, [0; 3]);
    }
}
