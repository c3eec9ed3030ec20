//! A small HTTP/1.1 server with one fixed response, keep-alive and pipelining: enough to put
//! curl, wrk or a load balancer's health check in front of the shield.
//!
//! Requests are read up to the end of their header block, straight from the receive buffer
//! (bounded at 16 KiB; larger is a 431 and the connection closes). Bodies are not expected: a
//! request with `Content-Length` has it skipped. HTTP/1.0 and `Connection: close` close after
//! the response, which makes the server the side that closes first (and so the one in
//! TIME-WAIT).
//!
//! Timeouts (what a slowloris client meets): a request's header block must be complete within
//! `header_timeout` of its first byte, the first request within `header_timeout` of the
//! connection, and a keep-alive connection waits at most `idle_timeout` for its next request.
//! Past the deadline the connection is closed (a RST when part of a request is still unread).

use tcp_engine::{Duration, Instant};

use super::{AppEvent, HttpConfig, StreamIo};

/// Largest request header block.
pub const MAX_HEAD: usize = 16 * 1024;

/// The responses, made once per shard.
#[derive(Debug)]
pub struct Responses {
    ok_keep_alive: Box<[u8]>,
    ok_close: Box<[u8]>,
    bad_request: Box<[u8]>,
    too_large: Box<[u8]>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Responses {
    pub(super) fn new(config: &HttpConfig) -> Responses {
        Responses {
            ok_keep_alive: response(200, &config.body, false),
            ok_close: response(200, &config.body, true),
            bad_request: response(400, b"bad request\n", true),
            too_large: response(431, b"request header too large\n", true),
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        }
    }

    fn get(&self, which: Which) -> &[u8] {
        match which {
            Which::OkKeepAlive => &self.ok_keep_alive,
            Which::OkClose => &self.ok_close,
            Which::BadRequest => &self.bad_request,
            Which::TooLarge => &self.too_large,
        }
    }
}

fn response(status: u16, body: &[u8], close: bool) -> Box<[u8]> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Request Header Fields Too Large",
    };
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: synshield\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r.into_boxed_slice()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    OkKeepAlive,
    OkClose,
    BadRequest,
    TooLarge,
}

impl Which {
    fn closes(self) -> bool {
        self != Which::OkKeepAlive
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Between requests (or before the first): no byte of a request yet.
    #[default]
    Idle,
    /// Part of a header block has arrived.
    Head,
    /// Sending a response; `skip` body bytes of the request follow it.
    Sending { which: Which, offset: u32, skip: u64 },
    /// Skipping the rest of a request body.
    Body { skip: u64 },
    /// Our FIN is queued: what still arrives is dropped.
    Done,
}

/// One HTTP connection: where it is, and its deadline.
#[derive(Debug, Default)]
pub struct HttpConn {
    state: State,
    deadline: Option<Instant>,
}

impl HttpConn {
    pub(super) fn on_event(
        &mut self,
        r: &Responses,
        io: &mut dyn StreamIo,
        event: AppEvent,
        now: Instant,
    ) -> Option<Instant> {
        match event {
            AppEvent::Closed(_) => return None,
            AppEvent::Opened => self.deadline = Some(now + r.header_timeout),
            AppEvent::Timer if self.deadline.is_some_and(|d| d <= now) => {
                if matches!(self.state, State::Idle | State::Head) {
                    // Slowloris, or a keep-alive connection nobody uses.
                    io.close();
                    self.state = State::Done;
                    self.deadline = None;
                    return None;
                }
            }
            _ => {}
        }
        self.pump(r, io, now);
        self.deadline
    }

    fn pump(&mut self, r: &Responses, io: &mut dyn StreamIo, now: Instant) {
        loop {
            match self.state {
                State::Done => {
                    let (a, b) = io.readable();
                    let n = a.len() + b.len();
                    io.consume(n);
                    return;
                }
                State::Sending { which, offset, skip } => {
                    let bytes = r.get(which);
                    let from = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                    let sent = io.send(&bytes[from..]);
                    let offset = from + sent;
                    if offset < bytes.len() {
                        // The send buffer is full: go on when it has room.
                        let offset = u32::try_from(offset).unwrap_or(u32::MAX);
                        self.state = State::Sending { which, offset, skip };
                        return;
                    }
                    if which.closes() {
                        io.shutdown();
                        self.state = State::Done;
                        self.deadline = None;
                    } else {
                        self.state = State::Body { skip };
                        self.deadline = Some(now + r.idle_timeout);
                    }
                }
                State::Body { skip } => {
                    let (a, b) = io.readable();
                    let have = (a.len() + b.len()) as u64;
                    let n = usize::try_from(have.min(skip)).unwrap_or(0);
                    io.consume(n);
                    let skip = skip - n as u64;
                    if skip > 0 {
                        self.state = State::Body { skip };
                        if io.peer_finished() {
                            io.shutdown();
                            self.state = State::Done;
                        }
                        return;
                    }
                    self.state = State::Idle;
                }
                State::Idle | State::Head => {
                    let (a, b) = io.readable();
                    if a.is_empty() && b.is_empty() {
                        if io.peer_finished() {
                            // The peer closed between requests: close our side too.
                            io.shutdown();
                            self.state = State::Done;
                            self.deadline = None;
                        }
                        return;
                    }
                    if self.state == State::Idle {
                        self.state = State::Head;
                        self.deadline = Some(now + r.header_timeout);
                    }
                    match find_head(a, b) {
                        HeadSearch::Found { len, head } => {
                            io.consume(len);
                            let which = match (head.bad, head.close) {
                                (true, _) => Which::BadRequest,
                                (false, true) => Which::OkClose,
                                (false, false) => Which::OkKeepAlive,
                            };
                            self.state =
                                State::Sending { which, offset: 0, skip: head.content_length };
                        }
                        HeadSearch::TooLarge => {
                            self.state =
                                State::Sending { which: Which::TooLarge, offset: 0, skip: 0 };
                        }
                        HeadSearch::Incomplete => {
                            if io.peer_finished() {
                                // A request cut short by FIN: nothing to answer.
                                io.close();
                                self.state = State::Done;
                                self.deadline = None;
                            }
                            return;
                        }
                    }
                }
            }
        }
    }
}

enum HeadSearch {
    Found { len: usize, head: Head },
    TooLarge,
    Incomplete,
}

/// Looks for a whole header block at the start of the readable bytes (`a` then `b`).
fn find_head(a: &[u8], b: &[u8]) -> HeadSearch {
    let end = |bytes: &[u8]| bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    if b.is_empty() {
        return match end(a) {
            Some(len) if len <= MAX_HEAD => HeadSearch::Found { len, head: Head::parse(&a[..len]) },
            Some(_) => HeadSearch::TooLarge,
            None if a.len() > MAX_HEAD => HeadSearch::TooLarge,
            None => HeadSearch::Incomplete,
        };
    }
    // The ring wrapped inside the head (rare): look at a bounded copy of both parts.
    let mut joined = Vec::with_capacity((a.len() + b.len()).min(MAX_HEAD + 4));
    joined.extend_from_slice(&a[..a.len().min(MAX_HEAD + 4)]);
    let rest = (MAX_HEAD + 4).saturating_sub(joined.len());
    joined.extend_from_slice(&b[..b.len().min(rest)]);
    find_head(&joined, &[])
}

struct Head {
    /// The response ends the connection (`Connection: close`, or HTTP/1.0 without
    /// `Connection: keep-alive`).
    close: bool,
    content_length: u64,
    bad: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Head {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let request = lines.next().unwrap_or_default();
        let mut parts = request.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let mut bad = method.is_none_or(str::is_empty)
            || target.is_none()
            || !version.is_some_and(|v| v.starts_with("HTTP/1."));
        let (mut connection_close, mut keep_alive, mut content_length) = (false, false, 0);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                connection_close |= value.eq_ignore_ascii_case("close");
                keep_alive |= value.eq_ignore_ascii_case("keep-alive");
            } else if name.eq_ignore_ascii_case("content-length") {
                match value.parse() {
                    Ok(n) => content_length = n,
                    Err(_) => bad = true,
                }
            }
        }
        let http10 = version == Some("HTTP/1.0");
        Head { close: connection_close || (http10 && !keep_alive), content_length, bad }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testio::MemIo;
    use super::*;

    fn responses(body: &[u8]) -> Responses {
        Responses::new(&HttpConfig { body: body.into(), ..HttpConfig::default() })
    }

    /// Feeds `requests` (then FIN) and returns everything answered.
    fn exchange(requests: &[u8]) -> (String, MemIo) {
        let r = responses(b"hi\n");
        let mut io = MemIo::new(1 << 20);
        let mut c = HttpConn::default();
        let t = Instant::from_millis(1);
        c.on_event(&r, &mut io, AppEvent::Opened, t);
        io.push(requests);
        c.on_event(&r, &mut io, AppEvent::Ready, t);
        io.fin = true;
        c.on_event(&r, &mut io, AppEvent::Ready, t);
        (String::from_utf8(io.take_sent()).unwrap(), io)
    }

    #[test]
    fn keep_alive_serves_pipelined_requests() {
        let (out, io) =
            exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(out.ends_with("hi\n"));
        assert!(!out.contains("Connection: close"));
        assert!(io.shut, "the peer's FIN between requests closes our side");
    }

    #[test]
    fn connection_close_and_http10_close_after_the_response() {
        let (out, io) =
            exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(out.matches("200 OK").count(), 1, "the second request is never read: {out}");
        assert!(out.contains("Connection: close"));
        assert!(io.shut && io.incoming.is_empty());
        let (out, _) = exchange(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(out.matches("200 OK").count(), 1);
    }

    #[test]
    fn bodies_are_skipped_and_garbage_is_a_400() {
        let (out, _) =
            exchange(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n");
        assert_eq!(out.matches("200 OK").count(), 2, "{out}");
        let (out, _) = exchange(b"hello\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[test]
    fn oversized_headers_are_refused() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        req.extend(b"\r\n\r\n");
        let (out, io) = exchange(&req);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        assert!(io.shut);
    }

    #[test]
    fn a_head_split_by_the_ring_is_found() {
        let r = responses(b"hi\n");
        let mut io = MemIo::new(1 << 20);
        let mut c = HttpConn::default();
        io.push(b"GET / HTTP/1.1\r\n\r\n");
        io.incoming.rotate_left(9); // the ring holds the head as two slices...
        io.incoming.rotate_right(9); // ...in the right order
        assert!(!io.incoming.as_slices().1.is_empty() || io.incoming.as_slices().0.len() == 18);
        c.on_event(&r, &mut io, AppEvent::Opened, Instant::ZERO);
        assert!(String::from_utf8(io.take_sent()).unwrap().starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_large_response_goes_out_as_the_send_buffer_drains() {
        let r = responses(&[b'x'; 5000]);
        let mut io = MemIo::new(1000);
        let mut c = HttpConn::default();
        io.push(b"GET / HTTP/1.1\r\n\r\n");
        c.on_event(&r, &mut io, AppEvent::Opened, Instant::ZERO);
        let mut all = io.take_sent();
        for _ in 0..10 {
            c.on_event(&r, &mut io, AppEvent::Ready, Instant::ZERO);
            all.extend(io.take_sent());
        }
        assert_eq!(all.len(), r.ok_keep_alive.len());
        assert!(all.ends_with(&[b'x'; 5000]));
    }

    #[test]
    fn slowloris_is_closed_at_the_header_deadline() {
        let r = responses(b"hi\n");
        let mut io = MemIo::new(1 << 20);
        let mut c = HttpConn::default();
        let t0 = Instant::from_secs(100);
        assert_eq!(c.on_event(&r, &mut io, AppEvent::Opened, t0), Some(t0 + r.header_timeout));
        // A byte every few seconds keeps coming, the head never completes.
        let mut now = t0;
        let mut deadline = None;
        for _ in 0..3 {
            now += Duration::from_secs(3);
            io.push(b"G");
            deadline = c.on_event(&r, &mut io, AppEvent::Ready, now);
        }
        assert_eq!(deadline, Some(t0 + Duration::from_secs(3) + r.header_timeout));
        let d = deadline.unwrap();
        assert_eq!(c.on_event(&r, &mut io, AppEvent::Timer, d), None);
        assert!(io.aborted, "closed with unread request bytes: a RST");
        assert!(io.sent.is_empty());
    }

    #[test]
    fn an_idle_keep_alive_connection_is_closed_at_the_idle_deadline() {
        let r = responses(b"hi\n");
        let mut io = MemIo::new(1 << 20);
        let mut c = HttpConn::default();
        let t0 = Instant::from_secs(100);
        c.on_event(&r, &mut io, AppEvent::Opened, t0);
        io.push(b"GET / HTTP/1.1\r\n\r\n");
        let d = c.on_event(&r, &mut io, AppEvent::Ready, t0).unwrap();
        assert_eq!(d, t0 + r.idle_timeout);
        // An early timer (a stale one) changes nothing.
        assert_eq!(c.on_event(&r, &mut io, AppEvent::Timer, t0), Some(d));
        assert!(!io.closed);
        assert_eq!(c.on_event(&r, &mut io, AppEvent::Timer, d), None);
        assert!(io.closed && !io.aborted, "nothing unread: a FIN");
    }
}
