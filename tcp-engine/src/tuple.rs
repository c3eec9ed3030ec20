//! The 4-tuple that names a connection.

use std::net::SocketAddr;

use crate::wire::{PseudoHeader, WireError};

/// A connection's addresses, seen from our side. The key of the connection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FourTuple {
    /// Our address and port (the protected service).
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
}

impl FourTuple {
    /// A tuple from our address and the peer's.
    #[must_use]
    pub const fn new(local: SocketAddr, remote: SocketAddr) -> FourTuple {
        FourTuple { local, remote }
    }

    /// The same connection seen from the peer's side.
    #[must_use]
    pub const fn reversed(self) -> FourTuple {
        FourTuple { local: self.remote, remote: self.local }
    }

    /// The pseudo-header of segments we send (source is local).
    pub fn outgoing_pseudo_header(&self) -> Result<PseudoHeader, WireError> {
        PseudoHeader::new(self.local.ip(), self.remote.ip())
    }

    /// The pseudo-header of segments we receive (source is remote).
    pub fn incoming_pseudo_header(&self) -> Result<PseudoHeader, WireError> {
        PseudoHeader::new(self.remote.ip(), self.local.ip())
    }
}
