//! Userspace's side of the XDP flow map (`SYNSHIELD_FLOWS`): the XDP program inserts an entry
//! when a third ACK's cookie validates; from then on the shard that owns the connection owns
//! the entry, and changes it at the connection's milestones:
//!
//! - TIME-WAIT: the entry gets [`FlowValue::TIME_WAIT`], so that a new handshake's third ACK
//!   for the same tuple reaches us as a reopen candidate (the XDP program checks its cookie)
//!   instead of as a segment of the old connection;
//! - reopened (RFC 6191): the entry becomes the new incarnation's;
//! - gone (closed, reset, timed out, refused): the entry is removed.
//!
//! One map operation (a system call) per milestone, none per segment: the XDP program hands
//! every redirected frame's flow value to userspace in the frame's metadata.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use tcp_common::{FlowKey, FlowValue};

/// The flow map as a shard changes it.
pub trait FlowMap {
    /// The entry of `key`, if any (the slow path: a frame without metadata).
    fn get(&mut self, key: &FlowKey) -> Option<FlowValue>;
    /// Writes the entry of `key`.
    fn set(&mut self, key: &FlowKey, value: &FlowValue) -> Result<(), FlowMapError>;
    /// Removes the entry of `key` (absent is fine).
    fn remove(&mut self, key: &FlowKey);
}

/// A map update the kernel refused.
#[derive(Debug, thiserror::Error)]
#[error("updating the XDP flow map: {0}")]
pub struct FlowMapError(String);

/// The kernel's map, through one shard's own handle.
pub struct XdpFlowMap(pub BpfHashMap<MapData, FlowKey, FlowValue>);

impl FlowMap for XdpFlowMap {
    fn get(&mut self, key: &FlowKey) -> Option<FlowValue> {
        self.0.get(key, 0).ok()
    }

    fn set(&mut self, key: &FlowKey, value: &FlowValue) -> Result<(), FlowMapError> {
        self.0.insert(key, value, 0).map_err(|e| FlowMapError(e.to_string()))
    }

    fn remove(&mut self, key: &FlowKey) {
        // Already gone is fine: our own earlier removal, or the entry was evicted.
        let _ = self.0.remove(key);
    }
}

/// An in-memory map, for tests of the shard without the kernel.
impl<S: std::hash::BuildHasher> FlowMap for HashMap<FlowKey, FlowValue, S> {
    fn get(&mut self, key: &FlowKey) -> Option<FlowValue> {
        HashMap::get(self, key).copied()
    }

    fn set(&mut self, key: &FlowKey, value: &FlowValue) -> Result<(), FlowMapError> {
        self.insert(*key, *value);
        Ok(())
    }

    fn remove(&mut self, key: &FlowKey) {
        HashMap::remove(self, key);
    }
}
