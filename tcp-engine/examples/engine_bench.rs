//! `cargo run --release -p tcp-engine --example engine_bench`: throughput between two engines
//! in memory, and memory per idle connection with a million in the table. Prints Markdown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tcp_engine::wire::{Packet, TcpRepr};
use tcp_engine::{
    Config, Connection, ConnectionTable, CookieHandshake, Duration, FourTuple, Instant, SeqNumber,
    State, TsInfo,
};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
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

/// Moves `TRANSFER` bytes from client to server; every segment is emitted to bytes with its
/// checksum and parsed back, as the I/O shell would.
fn throughput() -> (f64, u64) {
    let config = Arc::new(Config {
        send_buffer_size: 1 << 20,
        recv_buffer_size: 1 << 20,
        ..Config::default()
    });
    let tuple = FourTuple::new(addr(0x0a00_0001, 40000), addr(0x0a00_0002, 80));
    let mut client =
        Connection::connect(Instant::ZERO, tuple, SeqNumber::new(1), Arc::clone(&config));
    let mut server = Connection::listen(Instant::ZERO, tuple.reversed(), SeqNumber::new(2), config);
    let to_server = tuple.outgoing_pseudo_header().expect("v4");
    let to_client = tuple.reversed().outgoing_pseudo_header().expect("v4");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut read_buf = vec![0u8; 1 << 20];
    let mut wire = vec![0u8; 2048];
    let (mut sent, mut received, mut segments) = (0usize, 0usize, 0u64);
    let mut now = Instant::ZERO;
    let start = std::time::Instant::now();
    while received < TRANSFER {
        // Simulated time: 10 us per round, so RTT and timers stay realistic.
        now += Duration::from_micros(10);
        while sent < TRANSFER {
            let n = client.send(&chunk[..chunk.len().min(TRANSFER - sent)]).unwrap_or(0);
            if n == 0 {
                break;
            }
            sent += n;
        }
        let mut moved = false;
        while let Some(len) = client.poll_transmit(now, &mut wire) {
            let packet = Packet::new_checked(&wire[..len]).expect("valid");
            let repr = TcpRepr::parse(&packet, &to_server).expect("parse");
            server.handle_segment(now, &repr, packet.payload());
            segments += 1;
            moved = true;
        }
        while let Ok(n) = server.recv(&mut read_buf) {
            if n == 0 {
                break;
            }
            received += n;
        }
        while let Some(len) = server.poll_transmit(now, &mut wire) {
            let packet = Packet::new_checked(&wire[..len]).expect("valid");
            let repr = TcpRepr::parse(&packet, &to_client).expect("parse");
            client.handle_segment(now, &repr, packet.payload());
            segments += 1;
            moved = true;
        }
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
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = TRANSFER as f64 / start.elapsed().as_secs_f64();
    (rate, segments)
}

/// Memory per idle ESTABLISHED connection: a million cookie connections in one table.
fn memory_per_connection() -> (usize, f64) {
    let config = Arc::new(Config::default());
    let before = LIVE.load(Ordering::Relaxed);
    let mut table = ConnectionTable::new(config, 7);
    let start = std::time::Instant::now();
    let now = Instant::from_secs(1);
    for i in 0..IDLE_CONNECTIONS {
        let remote = addr(0x0b00_0000 + (i >> 14), 1024 + u16::try_from(i & 0x3fff).unwrap_or(0));
        let tuple = FourTuple::new(addr(0x0a00_0001, 443), remote);
        let handshake = CookieHandshake {
            tuple,
            iss: SeqNumber::new(i.wrapping_mul(2_654_435_761)),
            irs: SeqNumber::new(i),
            peer_mss: 1460,
            peer_wscale: Some(7),
            our_wscale: Some(7),
            sack_permitted: true,
            timestamps: Some(TsInfo { ts_recent: 1, our_tsval_offset: i }),
            peer_window: 64240 << 7,
        };
        let ack = TcpRepr {
            ack_number: Some(handshake.iss + 1),
            window_len: 64240,
            ..TcpRepr::new(remote.port(), 443, handshake.irs + 1)
        };
        table.insert_from_cookie(now, &handshake, &ack, &[]).expect("unique tuple");
        while table.poll_event().is_some() {}
        while table.poll_transmit().is_some() {}
    }
    let elapsed = start.elapsed();
    assert_eq!(table.len(), IDLE_CONNECTIONS as usize);
    assert_eq!(table.count_in_state(State::Established), IDLE_CONNECTIONS as usize);
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(table);
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let per_insert_ns = elapsed.as_nanos() as f64 / f64::from(IDLE_CONNECTIONS);
    (bytes / IDLE_CONNECTIONS as usize, per_insert_ns)
}

fn main() {
    let (rate, segments) = throughput();
    let (per_conn, insert_ns) = memory_per_connection();
    println!("## TCP engine (tcp-engine)");
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| throughput, {} MiB client to server, two engines in memory, wire emit + parse + checksum | {:.0} MB/s ({:.2} Gbit/s), {} segments |",
        TRANSFER >> 20,
        rate / 1e6,
        rate * 8.0 / 1e9,
        segments
    );
    println!(
        "| memory per idle ESTABLISHED connection, {IDLE_CONNECTIONS} in the table (heap bytes, counting allocator) | {per_conn} B |"
    );
    println!("| `size_of::<Connection>()` | {} B |", std::mem::size_of::<Connection>());
    println!("| cookie connection insert (from_cookie + third ACK + timer) | {insert_ns:.0} ns |");
}
