//! The connection states of RFC 9293 section 3.3.2.

use core::fmt;

/// Where a connection is in its life. `Display` prints the RFC name (`FIN-WAIT-1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection (the initial and the final state).
    Closed,
    /// Waiting for a SYN (passive open).
    Listen,
    /// Our SYN is sent, waiting for the SYN-ACK (active open).
    SynSent,
    /// A SYN arrived and our SYN-ACK is sent, waiting for the third ACK.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We sent FIN, it is not acknowledged yet and the peer's FIN has not arrived.
    FinWait1,
    /// Our FIN is acknowledged; the peer may still send (half-close).
    FinWait2,
    /// Both sides sent FIN, ours is not acknowledged yet (simultaneous close).
    Closing,
    /// Both FINs are through; waiting 2 MSL so a retransmitted FIN can still be acknowledged.
    TimeWait,
    /// The peer sent FIN; we may still send until the application shuts down.
    CloseWait,
    /// The peer closed first and we sent our FIN; waiting for its acknowledgement.
    LastAck,
}

impl State {
    /// Whether the handshake completed (RFC 9293: a "synchronized" state).
    #[must_use]
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent | State::SynReceived)
    }

    /// Whether we may still queue data to send.
    #[must_use]
    pub fn may_send(self) -> bool {
        matches!(self, State::SynSent | State::SynReceived | State::Established | State::CloseWait)
    }

    /// Whether the peer may still send us data (its FIN has not arrived).
    #[must_use]
    pub fn may_receive(self) -> bool {
        matches!(self, State::SynReceived | State::Established | State::FinWait1 | State::FinWait2)
    }

    /// All states, for iteration in statistics.
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::Closing,
        State::TimeWait,
        State::CloseWait,
        State::LastAck,
    ];

    /// Position in [`State::ALL`], for per-state counters.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::Closing => "CLOSING",
            State::TimeWait => "TIME-WAIT",
            State::CloseWait => "CLOSE-WAIT",
            State::LastAck => "LAST-ACK",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_rfc_names() {
        let names: Vec<String> = State::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "CLOSED",
                "LISTEN",
                "SYN-SENT",
                "SYN-RECEIVED",
                "ESTABLISHED",
                "FIN-WAIT-1",
                "FIN-WAIT-2",
                "CLOSING",
                "TIME-WAIT",
                "CLOSE-WAIT",
                "LAST-ACK"
            ]
        );
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}
