//! Discard (RFC 863): everything received is dropped without being copied; our side closes
//! after the peer's FIN.

use super::{AppEvent, StreamIo};

/// A discard connection: whether our FIN is queued.
#[derive(Debug, Default)]
pub struct DiscardConn {
    shut: bool,
}

impl DiscardConn {
    pub(super) fn on_event(&mut self, io: &mut dyn StreamIo, event: AppEvent) {
        if matches!(event, AppEvent::Closed(_)) {
            return;
        }
        let (a, b) = io.readable();
        let n = a.len() + b.len();
        io.consume(n);
        if io.peer_finished() && !self.shut {
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
    fn drops_everything_then_closes_after_fin() {
        let mut io = MemIo::new(16);
        let mut c = DiscardConn::default();
        io.push(&[7u8; 1000]);
        c.on_event(&mut io, AppEvent::Opened);
        assert!(io.incoming.is_empty());
        assert!(io.sent.is_empty() && !io.shut);
        io.fin = true;
        c.on_event(&mut io, AppEvent::Ready);
        assert!(io.shut);
    }
}
