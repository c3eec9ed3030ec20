//! Echo (RFC 862): everything received is sent back. When the peer half-closes, the rest is
//! echoed and then our side closes too.
//!
//! One copy per byte, from the receive buffer into the send buffer; a full send buffer stops
//! the copying (and with it the consuming, so the receive window closes: back-pressure to the
//! sender) until the peer has acknowledged some of what we sent.

use super::{AppEvent, StreamIo};

/// An echo connection: whether our FIN is queued.
#[derive(Debug, Default)]
pub struct EchoConn {
    shut: bool,
}

impl EchoConn {
    pub(super) fn on_event(&mut self, io: &mut dyn StreamIo, event: AppEvent) {
        if matches!(event, AppEvent::Closed(_)) || self.shut {
            return;
        }
        io.send_received();
        let (a, b) = io.readable();
        if !(a.is_empty() && b.is_empty()) {
            return; // the send buffer is full: go on when it drains
        }
        if io.peer_finished() {
            io.shutdown();
            self.shut = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testio::MemIo;
    use super::*;

    #[test]
    fn echoes_across_the_ring_and_carries_half_close() {
        let mut io = MemIo::new(1 << 16);
        let mut c = EchoConn::default();
        io.push(b"ping ");
        io.incoming.rotate_left(2); // the ring wraps: two slices
        io.incoming.rotate_right(2);
        io.push(b"pong");
        c.on_event(&mut io, AppEvent::Opened);
        assert_eq!(io.sent, b"ping pong");
        assert!(!io.shut);
        io.fin = true;
        c.on_event(&mut io, AppEvent::Ready);
        assert!(io.shut, "FIN after the peer's FIN");
    }

    #[test]
    fn a_full_send_buffer_stops_consuming() {
        let mut io = MemIo::new(4);
        let mut c = EchoConn::default();
        io.push(b"abcdefgh");
        io.fin = true;
        c.on_event(&mut io, AppEvent::Opened);
        assert_eq!(io.sent, b"abcd");
        assert_eq!(io.incoming.len(), 4, "what did not fit stays unread (window closes)");
        assert!(!io.shut, "no FIN before everything is echoed");
        assert_eq!(io.take_sent(), b"abcd");
        c.on_event(&mut io, AppEvent::Ready);
        assert_eq!(io.sent, b"efgh");
        assert!(io.shut);
    }
}
