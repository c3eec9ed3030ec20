//! A TCP proxy: each accepted connection is spliced to a new kernel TCP connection to the
//! backend. Bytes flow both ways through fixed buffers (so a slow side throttles the other
//! instead of growing memory), and a half-close on either side is carried to the other:
//! when one side's FIN arrives, the other side's write half is shut down and the other
//! direction keeps flowing.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Connects to `upstream` and splices it with `client` until both directions have ended.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: SocketAddr,
) -> std::io::Result<()> {
    let mut backend = TcpStream::connect(upstream).await?;
    backend.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut backend).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn splices_both_ways_with_half_close() {
        // A kernel backend on loopback that answers "got N" after the client's FIN.
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = backend.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = backend.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            s.write_all(format!("got {}", all.len()).as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let (mut client, proxied) = tokio::io::duplex(1024);
        let task = tokio::spawn(serve(proxied, addr));
        client.write_all(&[1u8; 5000]).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 5000");
        task.await.unwrap().unwrap();
    }
}
