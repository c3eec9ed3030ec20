//! The running data path: one shard per RX queue, each on its own thread with its AF_XDP
//! socket registered in the XDP program's socket map, so that the queue's validated flows reach
//! it.
//!
//! A shard thread loops: its poll set's reports (backend sockets, wake-ups), a batch of
//! received frames and forwarded ones, due timers, the table's events to the applications, and
//! every ready segment out; when there was nothing to do, it sleeps in one `epoll_wait` until a
//! frame, a wake-up, a backend socket or its next deadline. No system call per packet: one
//! `epoll_wait` per iteration and one TX kick per batch.
//!
//! Connections hash to RX queues by the NIC (RSS) and a flow's frames normally always arrive on
//! the same queue, so each shard owns its connections outright: no lock between shards on the
//! packet path. A frame that arrives on another queue is forwarded to its owner
//! ([`super::inbox`]).

use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, XskMap};
use std::collections::HashMap;

use tcp_common::{FlowKey, FlowValue};
use tcp_engine::{ConnectionTable, Duration, Instant, TableStats};

use super::flows::XdpFlowMap;
use super::inbox::InboxSender;
use super::limit::SourceLimit;
use super::poller::WakeFd;
use super::reconcile::Reconciler;
use super::shard::{Shard, ShardStats};
use crate::app::App;
use crate::xsk::{XskConfig, XskSocket};

/// Frames taken from the RX ring per loop iteration.
const RX_BATCH: usize = 64;
/// Forwarded frames handled per loop iteration.
const INBOX_BATCH: usize = 64;
/// Longest sleep, so a stop request is seen even if a wake-up were lost.
const MAX_IDLE_MS: i32 = 100;
/// How often a shard publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

const RUNNING: u8 = 0;
const GRACEFUL: u8 = 1;

/// What the data path needs to start.
#[derive(Clone, Debug)]
pub struct DataPathConfig {
    /// The interface the XDP program is attached to.
    pub iface: String,
    /// The engine's settings.
    pub engine: Arc<tcp_engine::Config>,
    /// The application every connection is served by.
    pub app: App,
    /// UMEM and ring sizes, copy or zero-copy.
    pub xsk: XskConfig,
    /// How long a graceful stop waits for connections to finish before resetting them.
    pub grace: Duration,
    /// Most connections held at once (all queues together, split evenly); beyond it new
    /// ones are refused with RST.
    pub max_conns: usize,
    /// Most half-open (SYN-RECEIVED) connections, all queues together; 0 when SYNs are never
    /// answered statefully (`--mode cookies`).
    pub max_half_open: usize,
    /// How often the flow map is walked for entries without a connection.
    pub reconcile_every: std::time::Duration,
    /// Most open connections one source address may hold (all shards together).
    pub max_conns_per_source: Option<u32>,
    /// Test only: the first shard panics after this many frames.
    pub fail_after_frames: Option<u64>,
}

/// Counters of one queue, published by its shard.
#[derive(Clone, Debug, Default)]
pub struct QueueStats {
    /// The RX queue (a sum over queues has the first one's).
    pub queue: u32,
    /// The shard's counters.
    pub shard: ShardStats,
    /// The engine's counters (connections by state, retransmissions, bytes).
    pub table: TableStats,
    /// Frames the kernel dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Frames the kernel dropped because the fill ring had no free frame for them (or they
    /// did not fit one): `XDP_STATISTICS` `rx_dropped`.
    pub rx_dropped: u64,
}

struct Queue {
    thread: JoinHandle<()>,
    waker: Arc<WakeFd>,
}

/// The running data path. Stop it with [`DataPath::stop`].
pub struct DataPath {
    queues: Vec<Queue>,
    state: Arc<AtomicU8>,
    stats: StatsHandle,
    failure: Arc<Failure>,
    reconciler: Reconciler,
}

/// The counters every shard publishes (four times a second), readable from anywhere.
#[derive(Clone, Default)]
pub struct StatsHandle(Arc<Vec<Arc<Mutex<QueueStats>>>>);

impl StatsHandle {
    /// Counters summed over the queues.
    pub fn sum(&self) -> QueueStats {
        let mut sum = QueueStats::default();
        for q in self.0.iter() {
            let s = q.lock().unwrap_or_else(PoisonError::into_inner).clone();
            sum.shard.accumulate(&s.shard);
            sum.table.accumulate(&s.table);
            sum.rx_ring_full += s.rx_ring_full;
            sum.rx_dropped += s.rx_dropped;
        }
        sum
    }

    /// Each queue's counters, in queue order.
    pub fn per_queue(&self) -> Vec<QueueStats> {
        self.0.iter().map(|q| q.lock().unwrap_or_else(PoisonError::into_inner).clone()).collect()
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

/// The data path with its sockets open and registered, before its threads run: what needs
/// privileges is done, and the threads start after they are dropped.
pub struct OpenDataPath {
    shards: Vec<(XskSocket, Shard<XdpFlowMap>)>,
    /// The reconciler's own map handle and the shards' inboxes.
    reconcile: (BpfHashMap<MapData, FlowKey, FlowValue>, HashMap<u32, InboxSender>),
    reconcile_every: std::time::Duration,
    grace: Duration,
    fail_after_frames: Option<u64>,
}

impl OpenDataPath {
    /// Opens one AF_XDP socket per RX queue of the interface, registers them in the XDP
    /// program's socket map, and makes a shard for each.
    pub fn open(ebpf: &Ebpf, config: &DataPathConfig) -> Result<OpenDataPath> {
        let queues = rx_queues(&config.iface)?;
        anyhow::ensure!(
            u8::try_from(queues.len()).is_ok(),
            "{} has {} RX queues; synshield serves at most 255",
            config.iface,
            queues.len()
        );
        let mut xsks: XskMap<MapData> =
            XskMap::try_from(crate::loader::map_handle(ebpf, tcp_common::maps::XSKS)?)?;
        let per_queue = |n: usize| n.div_ceil(queues.len().max(1));
        let per_queue_max = per_queue(config.max_conns);
        // Each shard's table keeps its share of the TIME-WAIT records the flow map has room
        // for (`tcp_common::flow::FlowTableSize`: as many as connections).
        let engine = Arc::new(tcp_engine::Config {
            max_time_wait: per_queue_max,
            ..(*config.engine).clone()
        });
        let mut shards = Vec::new();
        let mut inboxes = Vec::new();
        for &q in &queues {
            let xsk = XskSocket::open(&config.iface, q, &config.xsk).with_context(|| {
                format!(
                    "opening an AF_XDP socket on {} queue {q} (is CONFIG_XDP_SOCKETS set?)",
                    config.iface
                )
            })?;
            let flows =
                BpfHashMap::try_from(crate::loader::map_handle(ebpf, tcp_common::maps::FLOWS)?)?;
            let table = ConnectionTable::new(Arc::clone(&engine), isn_secret()?);
            let (mut shard, inbox) =
                Shard::new(q, table, config.app.clone(), XdpFlowMap(flows), per_queue_max)?;
            if config.max_half_open > 0 {
                let mut room = crate::loader::HalfOpenRoomWriter::open(ebpf)?;
                let flag = move |open: bool| room.set(q, open).is_ok();
                shard.set_half_open(per_queue(config.max_half_open), Box::new(flag));
            }
            shard.watch_socket(xsk.as_raw_fd())?;
            xsks.set(q, xsk.as_raw_fd(), 0)
                .with_context(|| format!("registering the AF_XDP socket of queue {q}"))?;
            inboxes.push((q, inbox));
            shards.push((xsk, shard));
        }
        let source_limit = config.max_conns_per_source.map(|n| Arc::new(SourceLimit::new(n)));
        for (xsk, shard) in &mut shards {
            if let Some(l) = &source_limit {
                shard.set_source_limit(Arc::clone(l));
            }
            for (q, inbox) in &inboxes {
                if *q != xsk.queue() {
                    shard.add_peer(*q, inbox.clone());
                }
            }
        }
        let map = BpfHashMap::try_from(crate::loader::map_handle(ebpf, tcp_common::maps::FLOWS)?)?;
        Ok(OpenDataPath {
            shards,
            reconcile: (map, inboxes.into_iter().collect()),
            reconcile_every: config.reconcile_every,
            grace: config.grace,
            fail_after_frames: config.fail_after_frames,
        })
    }

    /// Starts a thread per shard. A shard that ends before a stop was asked for (a panic)
    /// is reported through [`DataPath::failure`].
    pub fn start(self) -> Result<DataPath> {
        let state = Arc::new(AtomicU8::new(RUNNING));
        let failure = Arc::new(Failure::default());
        let mut running = Vec::new();
        let mut published_all = Vec::new();
        for (i, (xsk, shard)) in self.shards.into_iter().enumerate() {
            let queue = xsk.queue();
            let fail_after = if i == 0 { self.fail_after_frames } else { None };
            let published = Arc::new(Mutex::new(QueueStats { queue, ..QueueStats::default() }));
            let waker = shard.waker();
            let thread = {
                let (state, published, failure, grace) =
                    (Arc::clone(&state), Arc::clone(&published), Arc::clone(&failure), self.grace);
                std::thread::Builder::new()
                    .name(format!("synshield-q{queue}"))
                    .spawn(move || {
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_shard(xsk, shard, &state, &published, grace, fail_after);
                        }));
                        if state.load(Ordering::Acquire) == RUNNING {
                            let why = match &ran {
                                Err(p) => panic_message(p.as_ref()),
                                Ok(()) => "it ended".to_owned(),
                            };
                            failure.report(queue, why);
                        }
                    })
                    .context("starting a shard thread")?
            };
            published_all.push(published);
            running.push(Queue { thread, waker });
        }
        let (map, owners) = self.reconcile;
        let reconciler = Reconciler::start(map, owners, self.reconcile_every)
            .context("starting the flow-map reconciler")?;
        Ok(DataPath {
            queues: running,
            state,
            stats: StatsHandle(Arc::new(published_all)),
            failure,
            reconciler,
        })
    }
}

/// What a panic said.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// A shard thread that stopped while it should run: which queue, and why.
#[derive(Default)]
pub struct Failure {
    what: Mutex<Option<(u32, String)>>,
    notify: tokio::sync::Notify,
}

impl Failure {
    fn report(&self, queue: u32, why: String) {
        tracing::error!(queue, why, "a shard thread stopped");
        self.what.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert((queue, why));
        self.notify.notify_one();
    }

    /// Waits until a shard stops; returns its queue and why.
    pub async fn wait(&self) -> (u32, String) {
        loop {
            let notified = self.notify.notified();
            if let Some(w) = self.what.lock().unwrap_or_else(PoisonError::into_inner).clone() {
                return w;
            }
            notified.await;
        }
    }
}

impl DataPath {
    /// Reports a shard thread that stopped while it should run.
    pub fn failure(&self) -> Arc<Failure> {
        Arc::clone(&self.failure)
    }

    /// A handle on the queues' counters.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Graceful stop: every connection gets a FIN; those not finished within the grace
    /// period are reset. Returns when every shard thread has ended.
    pub fn stop(self) {
        self.reconciler.stop();
        self.state.store(GRACEFUL, Ordering::Release);
        for q in &self.queues {
            q.waker.wake();
        }
        for q in self.queues {
            if q.thread.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}

/// The 128-bit secret of the ISNs of connections a shard answers statefully (RFC 6528; a
/// cookie connection's ISN is its cookie): from the OS random source, as the cookie keys are.
fn isn_secret() -> Result<u128> {
    let key = crate::secrets::random_key().context("reading the OS random source")?;
    Ok((u128::from(key.k1) << 64) | u128::from(key.k0))
}

fn run_shard(
    mut xsk: XskSocket,
    mut shard: Shard<XdpFlowMap>,
    state: &AtomicU8,
    published_stats: &Mutex<QueueStats>,
    grace: Duration,
    fail_after_frames: Option<u64>,
) {
    let mut stop_deadline: Option<Instant> = None;
    let mut published = Instant::ZERO;
    let mut trim = Trim::default();
    // Sleep only when the last round found nothing to do; with the TX ring full, come back
    // soon for its completions.
    let mut wait = Wait::Look;
    loop {
        let now = monotonic_now();
        let timeout = match wait {
            Wait::Look => 0,
            Wait::TxFull => 1,
            Wait::Idle => sleep_ms(&mut shard, now),
        };
        shard.poll(now, timeout);
        let now = monotonic_now();
        if stop_deadline.is_none() && state.load(Ordering::Acquire) == GRACEFUL {
            shard.close_all(now);
            stop_deadline = Some(now + grace);
        }
        let received = xsk.recv(RX_BATCH, |meta, frame| shard.handle_frame(now, meta, frame));
        shard.update_room();
        assert!(
            fail_after_frames.is_none_or(|n| shard.stats().frames_in < n),
            "the failure --test-fail-after-frames asked for"
        );
        let forwarded = shard.handle_inbox(now, INBOX_BATCH);
        if shard.poll_timeout().is_some_and(|t| t <= now) {
            shard.handle_timeout(now);
        }
        shard.handle_events(now);
        let written = shard.transmit(now, &mut xsk);
        xsk.flush();
        // Everything written and taken by the kernel (a busy device leaves frames queued).
        let flowing = written && xsk.tx_pending() == 0;
        // Connections that finished by sending (their last ACK or RST): TIME-WAIT records and
        // closes, whose flow-map entries change now rather than at the next wake-up.
        let finished = shard.handle_events(now);
        wait = if received > 0 || forwarded > 0 || finished > 0 {
            Wait::Look
        } else if flowing {
            Wait::Idle
        } else {
            Wait::TxFull
        };
        if now.saturating_duration_since(published) >= PUBLISH_EVERY {
            publish(&xsk, &shard, published_stats);
            trim.after(shard.open_connections());
            published = now;
        }
        if let Some(deadline) = stop_deadline {
            if shard.open_connections() == 0 {
                break;
            }
            if now >= deadline {
                shard.abort_all(now);
                shard.handle_events(now);
                shard.transmit(now, &mut xsk);
                xsk.flush();
                break;
            }
        }
    }
    publish(&xsk, &shard, published_stats);
}

/// Gives memory back to the system after many connections closed.
///
/// The engine frees what a closed connection held, but glibc keeps freed memory in its arenas
/// for reuse: after a burst of 50,000 connections the process would stay at its peak size
/// forever. When a shard's open connections fall to half their high point (by at least
/// [`Trim::MIN_DROP`]), `malloc_trim` returns the free pages. Rare (a few times after a
/// burst), and on the shard's own thread at publish time, not per packet.
#[derive(Default)]
struct Trim {
    high: usize,
}

impl Trim {
    const MIN_DROP: usize = 1000;

    fn after(&mut self, open: usize) {
        self.high = self.high.max(open);
        if open <= self.high / 2 && self.high - open >= Trim::MIN_DROP {
            // SAFETY: malloc_trim has no preconditions; it locks the arenas itself.
            unsafe { libc::malloc_trim(0) };
            self.high = open;
        }
    }
}

#[derive(Clone, Copy)]
enum Wait {
    Look,
    TxFull,
    Idle,
}

/// How long a shard with nothing to do may sleep: until its next deadline, at most
/// [`MAX_IDLE_MS`].
fn sleep_ms(shard: &mut Shard<XdpFlowMap>, now: Instant) -> i32 {
    shard.poll_timeout().map_or(MAX_IDLE_MS, |t| {
        let ms = t.saturating_duration_since(now).total_millis();
        i32::try_from(ms).unwrap_or(MAX_IDLE_MS).clamp(0, MAX_IDLE_MS)
    })
}

fn publish(xsk: &XskSocket, shard: &Shard<XdpFlowMap>, stats: &Mutex<QueueStats>) {
    let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
    s.shard = shard.stats();
    s.table = shard.table_stats();
    if let Ok(k) = xsk.stats() {
        s.rx_ring_full = k.rx_ring_full;
        s.rx_dropped = k.rx_dropped;
    }
}
