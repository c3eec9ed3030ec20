//! The applications synshield serves on the connections it accepts. Each is an async
//! function of one [`TcpStream`]; they use only `AsyncRead`/`AsyncWrite`, so they run the same
//! over our engine and over a kernel socket (which is how they are unit-tested).
//!
//! - [`echo`]: sends back what it receives; half-close carried through.
//! - [`discard`]: reads and drops everything.
//! - [`http`]: a small fixed HTTP/1.1 response, keep-alive.
//! - [`proxy`]: splices each connection to a new kernel TCP connection to a backend.
//!
//! [`TcpStream`]: crate::datapath::stream::TcpStream

pub mod discard;
pub mod echo;
pub mod http;
pub mod proxy;

use std::net::SocketAddr;

/// Which application to serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AppKind {
    /// Echo (RFC 862).
    #[default]
    Echo,
    /// Discard (RFC 863).
    Discard,
    /// A fixed HTTP/1.1 response.
    Http,
    /// A TCP proxy to `--upstream`.
    Proxy,
}

/// An application with its settings.
#[derive(Clone, Debug)]
pub enum App {
    /// Echo.
    Echo,
    /// Discard.
    Discard,
    /// HTTP with this body.
    Http(std::sync::Arc<[u8]>),
    /// Proxy to this backend.
    Proxy(SocketAddr),
}

impl App {
    /// Serves one connection to the end, logging (not returning) its error.
    pub async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let result = match self {
            App::Echo => echo::serve(stream).await,
            App::Discard => discard::serve(stream).await.map(drop),
            App::Http(body) => http::serve(stream, &body).await,
            App::Proxy(upstream) => proxy::serve(stream, upstream).await,
        };
        if let Err(e) = result {
            log::debug!("connection ended with an error: {e}");
        }
    }
}
