//! `cargo run --release -p tcp-engine --example engine_bench`: throughput between two
//! connection tables in memory, and memory per idle connection and per TIME-WAIT record with
//! a million in the table. Prints Markdown.
//!
//! `engine_bench reassembly`: the receiver's cost per segment and peak heap under the worst
//! out-of-order pattern against the same segments in order (the "loss" section of `cargo
//! xtask bench`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tcp_engine::wire::{Flags, Packet, TcpRepr, TcpTimestamp};
use tcp_engine::{
    Config, Connection, ConnectionTable, CookieHandshake, Duration, FourTuple, Instant, SeqNumber,
    State, TableEvent, TsInfo,
};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TRANSFER: usize = 256 << 20;
const IDLE_CONNECTIONS: u32 = 1_000_000;

fn addr(ip: u32, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

struct Throughput {
    bytes_per_sec: f64,
    segments: u64,
    data_segments: u64,
    ns_per_data_segment: f64,
    copies_per_byte: f64,
}

/// Hands one wire segment to a table as the shell does: parse with the checksum, one
/// lookup, then the connection.
fn deliver(table: &mut ConnectionTable<()>, now: Instant, tuple: FourTuple, bytes: &[u8]) {
    let pseudo = tuple.incoming_pseudo_header().expect("v4");
    let packet = Packet::new_checked(bytes).expect("valid");
    let repr = TcpRepr::parse(&packet, &pseudo).expect("parse");
    let id = table.lookup(&tuple).expect("connection");
    table.handle_segment(now, id, &repr, packet.payload()).expect("live");
}

/// Moves `TRANSFER` bytes from a client table to a server table. Every segment is written
/// into a wire buffer with its checksum and parsed back, as the I/O shell would; the sender
/// fills its send buffer in place (`send_with`) and the receiver reads in place
/// (`recv_slices`), so the engine's copies are its own: into the receive buffer and out of
/// the send buffer.
fn throughput() -> Throughput {
    let config = Arc::new(Config {
        send_buffer_size: 1 << 20,
        recv_buffer_size: 1 << 20,
        ..Config::default()
    });
    let tuple = FourTuple::new(addr(0x0a00_0001, 40000), addr(0x0a00_0002, 80));
    let mut client: ConnectionTable<()> = ConnectionTable::new(Arc::clone(&config), 1);
    let mut server: ConnectionTable<()> = ConnectionTable::new(config, 2);
    server.listen(tuple.remote);
    let cid = client.connect(Instant::ZERO, tuple, ()).expect("connect");
    let mut wire = vec![0u8; 2048];
    let (mut sent, mut received, mut segments, mut data_segments) = (0usize, 0usize, 0u64, 0u64);
    let mut now = Instant::ZERO;
    let mut sid = None;
    let start = std::time::Instant::now();
    while received < TRANSFER {
        // Simulated time: 10 us per round, so RTT and timers stay realistic.
        now += Duration::from_micros(10);
        while sent < TRANSFER {
            let n = client
                .with_connection(now, cid, |conn, ()| {
                    conn.send_with(TRANSFER - sent, |spare| {
                        // The application's bytes (a kernel socket's, in the proxy).
                        spare.fill(0x5a);
                        spare.len()
                    })
                })
                .expect("live")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            sent += n;
        }
        let mut moved = false;
        while let Some(tx) = client.poll_transmit(now, &mut wire) {
            if Packet::new_checked(&wire[..tx.len]).is_ok_and(|p| !p.payload().is_empty()) {
                data_segments += 1;
            }
            if server.lookup(&tuple.reversed()).is_none() {
                let pseudo = tuple.reversed().incoming_pseudo_header().expect("v4");
                let packet = Packet::new_checked(&wire[..tx.len]).expect("valid");
                let repr = TcpRepr::parse(&packet, &pseudo).expect("parse");
                server.handle_unknown(now, tuple.reversed(), &repr, packet.payload());
            } else {
                deliver(&mut server, now, tuple.reversed(), &wire[..tx.len]);
            }
            segments += 1;
            moved = true;
        }
        while let Some(event) = server.poll_event() {
            if let TableEvent::Conn { id, .. } = event {
                sid = Some(id);
            }
        }
        if let Some(id) = sid {
            received += server
                .with_connection(now, id, |conn, ()| {
                    let (a, b) = conn.recv_slices();
                    let n = a.len() + b.len();
                    conn.consume(n)
                })
                .expect("live");
        }
        while let Some(tx) = server.poll_transmit(now, &mut wire) {
            deliver(&mut client, now, tuple, &wire[..tx.len]);
            segments += 1;
            moved = true;
        }
        while client.poll_event().is_some() {}
        if !moved {
            // Nothing in flight: let the next timer (delayed ACK) fire.
            if let Some(t) =
                [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min()
            {
                now = now.max(t);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
        }
    }
    let elapsed = start.elapsed();
    let copied = client.stats().totals.bytes_copied + server.stats().totals.bytes_copied;
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    Throughput {
        bytes_per_sec: TRANSFER as f64 / elapsed.as_secs_f64(),
        segments,
        data_segments,
        ns_per_data_segment: elapsed.as_nanos() as f64 / data_segments as f64,
        copies_per_byte: copied as f64 / TRANSFER as f64,
    }
}

fn handshake(i: u32) -> CookieHandshake {
    let remote = addr(0x0b00_0000 + (i >> 14), 1024 + u16::try_from(i & 0x3fff).unwrap_or(0));
    CookieHandshake {
        tuple: FourTuple::new(addr(0x0a00_0001, 443), remote),
        iss: SeqNumber::new(i.wrapping_mul(2_654_435_761)),
        irs: SeqNumber::new(i),
        peer_mss: 1460,
        peer_wscale: Some(7),
        our_wscale: Some(7),
        sack_permitted: true,
        timestamps: Some(TsInfo { ts_recent: 1, our_tsval_offset: i }),
        peer_window: 64240 << 7,
    }
}

fn from_peer(h: &CookieHandshake, seq_off: usize, ack_off: usize, flags: Flags) -> TcpRepr {
    TcpRepr {
        ack_number: Some(h.iss + 1 + ack_off),
        flags,
        window_len: 64240,
        timestamp: Some(TcpTimestamp { tsval: 2, tsecr: 1 }),
        ..TcpRepr::new(h.tuple.remote.port(), 443, h.irs + 1 + seq_off)
    }
}

struct Memory {
    per_idle_connection: usize,
    insert_ns: f64,
    per_time_wait: usize,
    left_after_close: usize,
    empty_table: usize,
}

/// Memory per idle ESTABLISHED connection (a million cookie connections in one table, the
/// index and timer heap included), then per TIME-WAIT record once every connection closed
/// (we close first, the peer's FIN+ACK follows), and what the table keeps once they expired.
fn memory() -> Memory {
    // Room for every connection's TIME-WAIT record: the default cap (`max_time_wait`, like
    // Linux's tcp_max_tw_buckets) would end most of them without one, and the record's size
    // is what this measures.
    let config = Arc::new(Config { max_time_wait: IDLE_CONNECTIONS as usize, ..Config::default() });
    let before = LIVE.load(Ordering::Relaxed);
    let mut table: ConnectionTable<()> = ConnectionTable::new(config, 7);
    let empty_table = LIVE.load(Ordering::Relaxed) - before;
    let start = std::time::Instant::now();
    let now = Instant::from_secs(1);
    let mut wire = vec![0u8; 2048];
    let mut ids = Vec::with_capacity(IDLE_CONNECTIONS as usize);
    let ids_bytes = LIVE.load(Ordering::Relaxed);
    for i in 0..IDLE_CONNECTIONS {
        let h = handshake(i);
        let ack = from_peer(&h, 0, 0, Flags::NONE);
        ids.push(table.insert_from_cookie(now, &h, &ack, &[], ()).expect("unique tuple"));
        while table.poll_event().is_some() {}
        while table.poll_transmit(now, &mut wire).is_some() {}
    }
    let elapsed = start.elapsed();
    let ids_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(ids_bytes).min(ids.capacity() * 8);
    assert_eq!(table.len(), IDLE_CONNECTIONS as usize);
    assert_eq!(table.count_in_state(State::Established), IDLE_CONNECTIONS as usize);
    let idle = LIVE.load(Ordering::Relaxed) - before - ids_bytes;

    let now = Instant::from_secs(2);
    for (i, &id) in (0..IDLE_CONNECTIONS).zip(&ids) {
        let h = handshake(i);
        table.with_connection(now, id, |c, ()| c.close()).expect("live").expect("open");
        while table.poll_transmit(now, &mut wire).is_some() {}
        table.handle_segment(now, id, &from_peer(&h, 0, 1, Flags::FIN), &[]).expect("live");
        while table.poll_transmit(now, &mut wire).is_some() {}
        while table.poll_event().is_some() {}
    }
    assert_eq!(table.count_in_state(State::TimeWait), IDLE_CONNECTIONS as usize);
    let time_wait = LIVE.load(Ordering::Relaxed) - before - ids_bytes;
    drop(ids);
    while let Some(at) = table.poll_timeout() {
        table.handle_timeout(at);
    }
    while table.poll_event().is_some() {}
    assert!(table.is_empty());
    let left = LIVE.load(Ordering::Relaxed) - before;
    drop(table);
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let insert_ns = elapsed.as_nanos() as f64 / f64::from(IDLE_CONNECTIONS);
    Memory {
        per_idle_connection: idle / IDLE_CONNECTIONS as usize,
        insert_ns,
        per_time_wait: time_wait / IDLE_CONNECTIONS as usize,
        left_after_close: left,
        empty_table,
    }
}

/// CPU time this thread has used: unlike the wall clock, not inflated when the (shared)
/// machine runs someone else.
fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// How a window's worth of segments arrives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// In sequence order.
    InOrder,
    /// Every other segment, each below all the others (the worst order for a sorted list,
    /// and past the cap on ranges each one drops the highest range), then each above all the
    /// others (past the cap, refused), then the whole window in order.
    Worst,
}

struct Reassembly {
    ns_per_segment: f64,
    segments: u64,
    peak_heap: usize,
    dropped_ranges: u64,
}

/// The receiver alone (one `Connection`, as the table would hold it): `windows` windows'
/// worth of `size`-byte segments in `pattern`, each answered (its ACK written out) and the
/// data read in place as it becomes readable.
fn reassembly(size: usize, pattern: Pattern, windows: usize) -> Reassembly {
    let config = Arc::new(Config::default());
    let window = config.recv_buffer_size;
    let h = handshake(1);
    let mut conn = Connection::from_cookie(Instant::ZERO, &h, config);
    let mut wire = vec![0u8; 2048];
    let now = Instant::from_secs(1);
    let payload = vec![0x5au8; size];
    // The third ACK, then our ACK with the full scaled window.
    conn.handle_segment(now, &from_peer(&h, 0, 0, Flags::NONE), &[]);
    conn.handle_timeout(Instant::from_secs(2));
    while conn.poll_transmit(now, &mut wire).is_some() {}
    let per_window = window / size - 1;
    let order: Vec<usize> = match pattern {
        Pattern::InOrder => (0..per_window).collect(),
        Pattern::Worst => {
            // Odd segments of the lower half downwards, of the upper half upwards; then the
            // whole window in order, as the sender resends what was not acknowledged (what
            // the receiver dropped or refused for the cap included).
            let half = per_window / 2;
            let mut o: Vec<usize> = (1..half).filter(|i| i % 2 == 1).rev().collect();
            o.extend((half..per_window).filter(|i| i % 2 == 1));
            o.extend(0..per_window);
            o
        }
    };
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut segments = 0u64;
    let start = thread_cpu_time();
    for w in 0..windows {
        let base = w * per_window * size;
        for &i in &order {
            conn.handle_segment(now, &from_peer(&h, base + i * size, 0, Flags::NONE), &payload);
            segments += 1;
            let (a, b) = conn.recv_slices();
            let n = a.len() + b.len();
            conn.consume(n);
            while conn.poll_transmit(now, &mut wire).is_some() {}
        }
    }
    let elapsed = thread_cpu_time().saturating_sub(start);
    let peak_heap = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert_eq!(conn.recv_queue_len(), 0, "everything delivered");
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    Reassembly {
        ns_per_segment: elapsed.as_nanos() as f64 / segments as f64,
        segments,
        peak_heap,
        dropped_ranges: conn.stats().out_of_order_dropped,
    }
}

fn reassembly_section() {
    println!("### Reassembly: the worst out-of-order pattern against in-order arrival");
    println!();
    println!(
        "One receiving connection (256 KiB window, at most {} out-of-order ranges), each segment \
         answered and the data read in place. Worst pattern: every other segment of the window \
         each below all the others, then each above, then the whole window again in order (the \
         sender resending what was not acknowledged). Peak heap: the most the \
         process held beyond the idle connection during the run (ring, ranges, everything; while \
         the ring doubles, briefly both rings). Thread CPU time, best of five runs each. Goal (issue 9): \
         out-of-order at most 2x the in-order cost per segment.",
        tcp_engine::conn::DEFAULT_REASSEMBLY_MAX_RANGES
    );
    println!();
    println!(
        "| segment | in order, ns per segment | worst pattern, ns per segment | ratio | peak heap in order | peak heap worst | ranges dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    // Best of five, alternating: the machine is shared, and the least disturbed run is the
    // one that measures the code.
    let best = |size, pattern, windows| {
        (0..5)
            .map(|_| reassembly(size, pattern, windows))
            .min_by(|a, b| a.ns_per_segment.total_cmp(&b.ns_per_segment))
            .expect("five runs")
    };
    for (size, windows) in [(1448, 200), (1, 2)] {
        let fine = best(size, Pattern::InOrder, windows);
        let worst = best(size, Pattern::Worst, windows);
        println!(
            "| {size} B ({} segments each) | {:.0} | {:.0} | {:.2}x | {} KiB | {} KiB | {} |",
            worst.segments,
            fine.ns_per_segment,
            worst.ns_per_segment,
            worst.ns_per_segment / fine.ns_per_segment,
            fine.peak_heap / 1024,
            worst.peak_heap / 1024,
            worst.dropped_ranges,
        );
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("reassembly") {
        reassembly_section();
        return;
    }
    let t = throughput();
    let m = memory();
    println!("## TCP engine (tcp-engine)");
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| throughput, {} MiB client to server, two connection tables in memory, wire emit + parse + checksum | {:.0} MB/s ({:.2} Gbit/s), {} segments ({} with data) |",
        TRANSFER >> 20,
        t.bytes_per_sec / 1e6,
        t.bytes_per_sec * 8.0 / 1e9,
        t.segments,
        t.data_segments
    );
    println!(
        "| time per in-order data segment (sender and receiver, ACKs included) | {:.0} ns |",
        t.ns_per_data_segment
    );
    println!(
        "| payload bytes copied by the engine per byte moved (`send_with` and `recv_slices`) | {:.2} |",
        t.copies_per_byte
    );
    println!(
        "| memory per idle ESTABLISHED connection, {IDLE_CONNECTIONS} in the table, index and timer heap included (heap bytes, counting allocator) | {} B |",
        m.per_idle_connection
    );
    println!("| `size_of::<Connection>()` | {} B |", std::mem::size_of::<Connection>());
    println!(
        "| memory per TIME-WAIT record, {IDLE_CONNECTIONS} in the table (index and expiry queue included) | {} B |",
        m.per_time_wait
    );
    println!(
        "| table memory left once all {IDLE_CONNECTIONS} were closed and expired (empty table: {} B) | {} B |",
        m.empty_table, m.left_after_close
    );
    println!(
        "| cookie connection insert (from_cookie + third ACK + timer) | {:.0} ns |",
        m.insert_ns
    );
}
