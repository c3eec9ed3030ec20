//! The flow map's reconciliation: every entry belongs to a live connection (or a TIME-WAIT
//! record), or it goes within two scans.
//!
//! Shards remove an entry when its connection ends, and when a frame finds an entry without
//! a connection. What neither catches is an entry no frame ever reaches again: a client that
//! vanished after its third ACK was lost on the way to userspace, say. A thread walks the map
//! every `period` and asks each entry's owner shard (named in the entry) about it through the
//! shard's inbox ([`Message::Check`]); the shard removes an entry it found without a
//! connection in two consecutive scans and counts it (`orphans_removed`). So an orphan lives
//! at most two periods (60 s by default). The walk is one `bpf(2)` call per entry on this
//! thread, never on a packet thread; it blocks on a shard's full inbox rather than drop its
//! questions.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};
use tcp_common::{FlowKey, FlowValue};

use super::inbox::{InboxSender, Message};

/// How often the map is walked by default.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

/// The running reconciler; [`Reconciler::stop`] ends it.
pub struct Reconciler {
    thread: JoinHandle<()>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Reconciler {
    /// Starts walking `map` every `period`, asking the shards in `owners` (by RX queue).
    pub fn start(
        map: BpfHashMap<MapData, FlowKey, FlowValue>,
        owners: HashMap<u32, InboxSender>,
        period: Duration,
    ) -> std::io::Result<Reconciler> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("synshield-reconcile".into())
                .spawn(move || run(&map, &owners, period, &stop))?
        };
        Ok(Reconciler { thread, stop })
    }

    /// Stops the walk and waits for the thread.
    pub fn stop(self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        let _ = self.thread.join();
    }
}

fn run(
    map: &BpfHashMap<MapData, FlowKey, FlowValue>,
    owners: &HashMap<u32, InboxSender>,
    period: Duration,
    stop: &(Mutex<bool>, Condvar),
) {
    let (flag, cv) = stop;
    for scan in 1u64.. {
        let stopped = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) =
            cv.wait_timeout_while(stopped, period, |s| !*s).unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        drop(stopped);
        // Entries the walk cannot read (one removed meanwhile) are skipped: the next scan
        // sees the map as it is then.
        for (key, value) in map.iter().filter_map(Result::ok) {
            if let Some(owner) = owners.get(&u32::from(value.queue)) {
                owner.post_waiting(Message::Check { key, scan });
            }
        }
    }
}
