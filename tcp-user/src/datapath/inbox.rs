//! Frames for a connection that another shard owns.
//!
//! A flow's frames normally always arrive on the RX queue whose shard admitted it. Two things
//! move a flow to another queue: the NIC's RSS indirection table being rebalanced (`ethtool
//! -X`), and, on a veth, Linux's sender re-hashing a flow after a retransmission timeout
//! (`sk_rethink_txhash`): the veth delivers on the RX queue of the sender's TX queue. An AF_XDP
//! socket only receives its own queue's frames, so the receiving shard hands such a frame to
//! the owner (named in the XDP metadata) through the owner's inbox, and wakes it.
//!
//! A bounded channel per shard: a copy of the frame per hand-off, which is the rare path; a
//! full inbox drops the frame (counted; TCP retransmits) instead of blocking a packet thread.
//! The same inbox carries the flow-map reconciler's questions ([`Message::Check`]).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tcp_common::FlowKey;

use super::poller::WakeFd;

/// Frames an inbox holds before it refuses more.
pub const INBOX_CAPACITY: usize = 1024;

/// What a shard's inbox carries.
#[derive(Debug)]
pub enum Message {
    /// A frame another shard received for one of this shard's connections: the metadata
    /// area and the frame, as received.
    Frame(Box<[u8]>),
    /// The reconciler found this flow-map entry, owned by this shard, in scan `scan`: does
    /// its tuple still have a connection?
    Check {
        /// The entry's key.
        key: FlowKey,
        /// The number of the reconciler's scan.
        scan: u64,
    },
}

/// The sending side of one shard's inbox; every shard holds one per other shard.
#[derive(Clone)]
pub struct InboxSender {
    tx: SyncSender<Message>,
    wake: Arc<WakeFd>,
}

impl InboxSender {
    /// Hands `frame` (the metadata area and the frame, as received) to the owner. `false` if
    /// its inbox is full or gone: the frame is dropped.
    pub fn send(&self, frame: &[u8]) -> bool {
        self.post(Message::Frame(frame.into()))
    }

    /// Posts a message, waiting while the inbox is full (not for packet threads: the
    /// reconciler). Nothing happens if the shard is gone.
    pub fn post_waiting(&self, message: Message) {
        if self.tx.send(message).is_ok() {
            self.wake.wake();
        }
    }

    /// Posts a message; `false` if the inbox is full or gone.
    pub fn post(&self, message: Message) -> bool {
        match self.tx.try_send(message) {
            Ok(()) => {
                self.wake.wake();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A shard's inbox, and the eventfd that wakes it.
pub struct Inbox {
    rx: Receiver<Message>,
}

impl Inbox {
    /// An inbox and its sender; `wake` is the owner shard's wake-up eventfd.
    pub fn new(wake: Arc<WakeFd>) -> (Inbox, InboxSender) {
        let (tx, rx) = sync_channel(INBOX_CAPACITY);
        (Inbox { rx }, InboxSender { tx, wake })
    }

    /// The next message, if any.
    pub fn take(&self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_wakes_the_owner() {
        let wake = Arc::new(WakeFd::new().unwrap());
        let (inbox, tx) = Inbox::new(Arc::clone(&wake));
        for i in 0..INBOX_CAPACITY {
            assert!(tx.send(&[u8::try_from(i % 256).unwrap()]), "{i}");
        }
        assert!(!tx.send(b"x"), "a full inbox refuses instead of blocking");
        assert!(matches!(inbox.take(), Some(Message::Frame(f)) if f[..] == [0u8]));
        let mut p = super::super::poller::Poller::new(4).unwrap();
        p.add_readable(wake.raw_fd(), 7).unwrap();
        assert_eq!(p.wait(0, |_| {}).unwrap(), 1, "the owner was woken");
    }
}
