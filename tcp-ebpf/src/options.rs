//! TCP options of a SYN or ACK in the XDP program: a fast path for a Linux client's layout,
//! the general parser as a global BPF function, and the copy out of the packet they share.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use tcp_common::{
    Counter,
    checksum::Sum,
    wire::options::{
        MAX_OPTIONS_LEN, OPTIONS_BUF_LEN, TcpOptions, parse_linux_syn_options, parse_options,
    },
};

use crate::TCP_HLEN;
use crate::packet::{in_bounds, load_be32, load_options};

/// Per-CPU buffer for the TCP options being parsed (see [`OptionsArea`]).
#[map(name = "SYNSHIELD_OPTIONS")]
static OPTIONS_BUF: PerCpuArray<[u8; OPTIONS_BUF_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// The TCP option parser as a *global* BPF function (exported, so BTF linkage global): the
/// verifier checks it once, on its own, with unknown arguments, and its callers see only a
/// scalar result and an output buffer of unknown contents.
///
/// Verifier note: inlined into the twelve SYN and ACK paths (six frame layouts each), the
/// parser's per-path constants (which options were seen, where the next one starts) made the
/// verifier explore everything after it once per combination: over a million instructions.
/// As a static subprogram it would still be verified once per call, in each caller's state.
///
/// Returns 0 and fills `out`, or 1 for malformed options (or a NULL pointer: the verifier
/// treats a global function's pointer arguments as possibly NULL).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synshield_tcp_options(
    buf: *const [u8; OPTIONS_BUF_LEN],
    len: u64,
    out: *mut TcpOptions,
) -> u64 {
    // SAFETY: the callers pass a stack buffer and a stack value (or NULL, checked here).
    let (Some(buf), Some(out)) = (unsafe { buf.as_ref() }, unsafe { out.as_mut() }) else {
        return 1;
    };
    if len > MAX_OPTIONS_LEN as u64 {
        return 1;
    }
    #[expect(clippy::cast_possible_truncation, reason = "at most 40")]
    match parse_options(buf, len as usize) {
        Ok(o) => {
            *out = o;
            0
        }
        Err(_) => 1,
    }
}

/// The `len` bytes of TCP options at frame offset `L4 + 20`, parsed, and their checksum sum;
/// or the drop counter. A header without options (a bare SYN, hping3's default) costs nothing,
/// and a Linux client's 20 bytes take five loads and three comparisons
/// ([`parse_linux_syn_options`]); the rest is copied out and parsed in general.
#[inline(always)]
pub fn read_options<const L4: usize>(
    ctx: &XdpContext,
    len: usize,
) -> Result<(TcpOptions, Sum), Counter> {
    if len == 0 {
        return Ok((TcpOptions::default(), Sum::default()));
    }
    if len == 20 {
        let (data, end) = (ctx.data(), ctx.data_end());
        if !in_bounds(data, end, L4 + TCP_HLEN + 20) {
            return Err(Counter::DropTruncated);
        }
        let p = data + L4 + TCP_HLEN;
        // SAFETY: 20 bytes checked.
        let w = unsafe {
            [load_be32(p), load_be32(p + 4), load_be32(p + 8), load_be32(p + 12), load_be32(p + 16)]
        };
        if let Some(o) = parse_linux_syn_options(w) {
            let sum = w.iter().fold(Sum::default(), |s, x| s.add32(*x));
            return Ok((o, sum));
        }
    }
    let buf = OPTIONS_BUF.get_ptr_mut(0).ok_or(Counter::DropBadOptions)?;
    let area = load_options(ctx, buf, L4 + TCP_HLEN, len).ok_or(Counter::DropTruncated)?;
    let mut opts = TcpOptions::default();
    if synshield_tcp_options(area.bytes, len as u64, &mut opts) != 0 {
        return Err(Counter::DropBadOptions);
    }
    Ok((opts, area.sum))
}
