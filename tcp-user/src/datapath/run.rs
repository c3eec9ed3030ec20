//! The running data path: one thread per RX queue, each with its AF_XDP socket and its
//! [`Manager`], registered in the XDP program's socket map so that the queue's validated
//! flows reach it.
//!
//! A queue thread loops: receive a batch of frames into the manager, run due timers, drain
//! (applications and transmits), flush the TX ring; when there was nothing to do, sleep in
//! `poll(2)` on the socket and the doorbell until the engine's next deadline. No syscall per
//! packet: one `poll` per idle period and one TX kick per batch.
//!
//! Connections hash to RX queues by the NIC (RSS), and a flow's segments always arrive on the
//! same queue, so each thread owns its connections outright: no locks between queues.

use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, XskMap};
use tcp_common::{FlowKey, FlowValue};
use tcp_engine::{ConnectionTable, Duration, Instant, TableStats};

use super::manager::{CookieVerifier, FlowTable, Manager, ManagerStats};
use super::stream::{Doorbell, Listener, TcpStream};
use crate::xsk::{XskConfig, XskSocket};

/// Frames taken from the RX ring per loop iteration.
const RX_BATCH: usize = 64;
/// Longest sleep, so a stop request is seen even without traffic or timers.
const MAX_IDLE_MS: i32 = 100;

const RUNNING: u8 = 0;
const GRACEFUL: u8 = 1;

/// What the data path needs to start.
#[derive(Clone, Debug)]
pub struct DataPathConfig {
    /// The interface the XDP program is attached to.
    pub iface: String,
    /// The engine's settings.
    pub engine: Arc<tcp_engine::Config>,
    /// UMEM and ring sizes, copy or zero-copy.
    pub xsk: XskConfig,
    /// Connections waiting for `accept` beyond which new ones are reset.
    pub backlog: usize,
    /// How long a graceful stop waits for connections to finish before resetting them.
    pub grace: Duration,
    /// Most connections held at once (all queues together, split evenly); beyond it new
    /// ones are reset.
    pub max_conns: usize,
    /// Lets a new handshake reopen a tuple in TIME-WAIT (see [`CookieVerifier`]).
    pub cookies: Option<Arc<CookieVerifier>>,
}

/// The flow table in the kernel, through one queue thread's own map handle.
pub struct XdpFlows(BpfHashMap<MapData, FlowKey, FlowValue>);

impl FlowTable for XdpFlows {
    fn lookup(&mut self, key: &FlowKey) -> Option<FlowValue> {
        self.0.get(key, 0).ok()
    }

    fn remove(&mut self, key: &FlowKey) {
        // Already gone is fine: the XDP program never removes flows, so this is our own
        // earlier removal or a table reset.
        let _ = self.0.remove(key);
    }

    fn insert(&mut self, key: FlowKey, value: FlowValue) {
        if let Err(e) = self.0.insert(key, value, 0) {
            log::warn!("updating a reopened flow in the XDP flow table: {e}");
        }
    }
}

/// Counters of one queue, published by its thread.
#[derive(Clone, Debug, Default)]
pub struct QueueStats {
    /// The manager's counters.
    pub manager: ManagerStats,
    /// The engine's counters (connections by state, retransmissions, bytes).
    pub table: TableStats,
    /// Frames the kernel dropped because the RX ring was full.
    pub rx_ring_full: u64,
}

struct Queue {
    thread: JoinHandle<()>,
    doorbell: Arc<Doorbell>,
}

/// The running data path. Stop it with [`DataPath::stop`].
pub struct DataPath {
    queues: Vec<Queue>,
    state: Arc<AtomicU8>,
    stats: StatsHandle,
}

/// The counters every queue thread publishes (four times a second), readable from anywhere.
#[derive(Clone, Default)]
pub struct StatsHandle(Arc<Vec<Arc<Mutex<QueueStats>>>>);

impl StatsHandle {
    /// Counters summed over the queues.
    pub fn sum(&self) -> QueueStats {
        let mut sum = QueueStats::default();
        for q in self.0.iter() {
            let s = q.lock().unwrap_or_else(PoisonError::into_inner).clone();
            add_stats(&mut sum, &s);
        }
        sum
    }
}

/// Monotonic time as the engine's `Instant`: `CLOCK_MONOTONIC`, the clock of the XDP
/// program's `bpf_ktime_get_ns`, so our TCP timestamps continue from the SYN-ACK's.
pub fn monotonic_now() -> Instant {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Instant::from_micros(secs * 1_000_000 + nanos / 1_000)
}

/// The RX queues of `iface` (`/sys/class/net/IF/queues/rx-N`).
pub fn rx_queues(iface: &str) -> Result<Vec<u32>> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let mut queues: Vec<u32> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing the RX queues of {iface} ({dir})"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("rx-")?.parse().ok())
        .collect();
    queues.sort_unstable();
    Ok(queues)
}

impl DataPath {
    /// Opens one AF_XDP socket per RX queue of the interface, registers them in the XDP
    /// program's socket map, and starts a thread per queue. Returns the data path and the
    /// listener that hands out connections.
    pub fn start(ebpf: &Ebpf, config: &DataPathConfig) -> Result<(DataPath, Listener)> {
        let (listener, accept) = Listener::new(config.backlog);
        let state = Arc::new(AtomicU8::new(RUNNING));
        let queues = rx_queues(&config.iface)?;
        let mut xsks: XskMap<MapData> =
            XskMap::try_from(crate::loader::map_handle(ebpf, tcp_common::maps::XSKS)?)?;
        let mut running = Vec::new();
        let mut published_all = Vec::new();
        let per_queue_max = config.max_conns.div_ceil(queues.len().max(1));
        for q in queues {
            let xsk = XskSocket::open(&config.iface, q, &config.xsk).with_context(|| {
                format!(
                    "opening an AF_XDP socket on {} queue {q} (is CONFIG_XDP_SOCKETS set?)",
                    config.iface
                )
            })?;
            xsks.set(q, xsk.as_raw_fd(), 0)
                .with_context(|| format!("registering the AF_XDP socket of queue {q}"))?;
            let flows =
                BpfHashMap::try_from(crate::loader::map_handle(ebpf, tcp_common::maps::FLOWS)?)?;
            let doorbell = Arc::new(Doorbell::new()?);
            let table = ConnectionTable::new(Arc::clone(&config.engine), isn_secret()?);
            let mut manager =
                Manager::new(table, XdpFlows(flows), accept.clone(), Arc::clone(&doorbell));
            manager.set_max_connections(per_queue_max);
            if let Some(c) = &config.cookies {
                manager.set_cookie_verifier(Arc::clone(c));
            }
            let published = Arc::new(Mutex::new(QueueStats::default()));
            let thread = {
                let (state, doorbell, published, grace) = (
                    Arc::clone(&state),
                    Arc::clone(&doorbell),
                    Arc::clone(&published),
                    config.grace,
                );
                std::thread::Builder::new()
                    .name(format!("synshield-q{q}"))
                    .spawn(move || run_queue(xsk, manager, &doorbell, &state, &published, grace))
                    .context("starting a queue thread")?
            };
            published_all.push(published);
            running.push(Queue { thread, doorbell });
        }
        Ok((
            DataPath { queues: running, state, stats: StatsHandle(Arc::new(published_all)) },
            listener,
        ))
    }

    /// A handle on the queues' counters.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Graceful stop: every connection gets a FIN; those not finished within the grace
    /// period are reset. Returns when every queue thread has ended.
    pub fn stop(self) {
        self.state.store(GRACEFUL, Ordering::Release);
        for q in &self.queues {
            q.doorbell.wake();
        }
        for q in self.queues {
            if q.thread.join().is_err() {
                log::error!("a queue thread panicked");
            }
        }
    }
}

fn add_stats(sum: &mut QueueStats, s: &QueueStats) {
    let (m, n) = (&mut sum.manager, &s.manager);
    m.frames_in += n.frames_in;
    m.frames_malformed += n.frames_malformed;
    m.not_validated += n.not_validated;
    m.admitted += n.admitted;
    m.reopened += n.reopened;
    m.accept_overflow += n.accept_overflow;
    m.closed += n.closed;
    m.frames_out += n.frames_out;
    m.no_route += n.no_route;
    sum.table.accumulate(&s.table);
    sum.rx_ring_full += s.rx_ring_full;
}

/// A secret for the ISNs of connections we open (not used by cookie connections, whose ISN
/// is the cookie): from the OS random source, as the cookie keys are.
fn isn_secret() -> Result<u64> {
    let key = crate::secrets::random_key().context("reading the OS random source")?;
    Ok(key.k0 ^ key.k1)
}

fn run_queue(
    mut xsk: XskSocket,
    mut manager: Manager<XdpFlows>,
    doorbell: &Doorbell,
    state: &AtomicU8,
    published_stats: &Mutex<QueueStats>,
    grace: Duration,
) {
    let mut stop_deadline: Option<Instant> = None;
    let mut published = Instant::ZERO;
    loop {
        let now = monotonic_now();
        if stop_deadline.is_none() && state.load(Ordering::Acquire) == GRACEFUL {
            manager.close_all(now);
            stop_deadline = Some(now + grace);
        }
        let received = xsk.recv(RX_BATCH, |frame| manager.handle_frame(now, frame));
        if manager.poll_timeout().is_some_and(|t| t <= now) {
            manager.handle_timeout(now);
        }
        let flowing = manager.drain(now, &mut xsk);
        xsk.flush();
        if now.saturating_duration_since(published) >= Duration::from_millis(250) {
            publish(&xsk, &manager, published_stats);
            published = now;
        }
        if let Some(deadline) = stop_deadline {
            if manager.open_connections() == 0 {
                break;
            }
            if now >= deadline {
                manager.abort_all(now);
                manager.drain(now, &mut xsk);
                xsk.flush();
                break;
            }
        }
        if received == 0 {
            let timeout = if flowing {
                manager.poll_timeout().map_or(MAX_IDLE_MS, |t| {
                    let ms = t.saturating_duration_since(now).total_millis();
                    i32::try_from(ms).unwrap_or(MAX_IDLE_MS).clamp(0, MAX_IDLE_MS)
                })
            } else {
                1 // TX ring full: come back soon for completions.
            };
            wait(&xsk, doorbell, timeout);
        }
    }
    publish(&xsk, &manager, published_stats);
}

fn publish(xsk: &XskSocket, manager: &Manager<XdpFlows>, stats: &Mutex<QueueStats>) {
    let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
    s.manager = manager.stats();
    s.table = manager.table().stats();
    if let Ok(k) = xsk.stats() {
        s.rx_ring_full = k.rx_ring_full;
    }
}

fn wait(xsk: &XskSocket, doorbell: &Doorbell, timeout_ms: i32) {
    let mut fds = [
        libc::pollfd { fd: xsk.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: doorbell.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds. EINTR or an error just ends the wait early.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
}

/// Hands accepted streams to `serve` on the current tokio runtime until the listener ends.
pub async fn serve_each<F, Fut>(mut listener: Listener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    while let Some(stream) = listener.accept().await {
        tokio::spawn(serve(stream));
    }
}
