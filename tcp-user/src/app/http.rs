//! A small HTTP/1.1 server with one fixed response, keep-alive: enough to put curl, wrk or a
//! load balancer's health check in front of the shield.
//!
//! Requests are read up to the end of their header block (bounded at 16 KiB; larger is a
//! 431 and the connection closes). Bodies are not expected: a request with
//! `Content-Length` has it skipped. HTTP/1.0 and `Connection: close` close after the
//! response, which makes the server the side that closes first (and so the one in
//! TIME-WAIT).

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest request header block.
const MAX_HEAD: usize = 16 * 1024;

/// Serves requests on `stream` until the peer closes or asks us to.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    body: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(end) = read_head(&mut stream, &mut buf).await? else {
            // The peer closed between requests: close our side too.
            return stream.shutdown().await;
        };
        let head = Head::parse(&buf[..end]);
        let mut skip = end + head.content_length;
        let close = head.close;
        let response = match (head.bad, buf.len() > MAX_HEAD) {
            (_, true) => response(431, b"request header too large\n", true),
            (true, false) => response(400, b"bad request\n", true),
            (false, false) => response(200, body, close),
        };
        stream.write_all(&response).await?;
        if close || head.bad {
            return stream.shutdown().await;
        }
        // Skip the request body, if any, then keep what follows (pipelining).
        while buf.len() < skip {
            let n = skip - buf.len();
            let mut sink = vec![0u8; n.min(64 * 1024)];
            let got = stream.read(&mut sink).await?;
            if got == 0 {
                return stream.shutdown().await;
            }
            skip -= got;
        }
        buf.drain(..skip.min(buf.len()));
    }
}

/// Reads until `buf` holds a whole header block; returns its length (including the blank
/// line), `None` at a clean EOF before any byte of a request.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(buf.len()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Head {
    /// The response ends the connection (`Connection: close`, or HTTP/1.0 without
    /// `Connection: keep-alive`).
    close: bool,
    content_length: usize,
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

fn response(status: u16, body: &[u8], close: bool) -> Vec<u8> {
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
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(requests: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move { serve(server, b"hi\n").await });
        client.write_all(requests).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn keep_alive_serves_pipelined_requests() {
        let out =
            exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(out.ends_with("hi\n"));
        assert!(!out.contains("Connection: close"));
    }

    #[tokio::test]
    async fn connection_close_and_http10_close_after_the_response() {
        let out =
            exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(out.matches("200 OK").count(), 1, "the second request is never read: {out}");
        assert!(out.contains("Connection: close"));
        let out = exchange(b"GET / HTTP/1.0\r\n\r\n").await;
        assert_eq!(out.matches("200 OK").count(), 1);
    }

    #[tokio::test]
    async fn bodies_are_skipped_and_garbage_is_a_400() {
        let out =
            exchange(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
                .await;
        assert_eq!(out.matches("200 OK").count(), 2, "{out}");
        let out = exchange(b"hello\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[tokio::test]
    async fn oversized_headers_are_refused() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        req.extend(b"\r\n\r\n");
        let out = exchange(&req).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }
}
