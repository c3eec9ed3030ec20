//! Echo (RFC 862): everything received is sent back. When the peer half-closes, the rest is
//! echoed and then we close our side too.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

/// Echoes `stream` until the peer's FIN, then sends ours.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> std::io::Result<()> {
    let (mut rx, mut tx) = tokio::io::split(stream);
    tokio::io::copy(&mut rx, &mut tx).await?;
    tx.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn echoes_and_carries_half_close() {
        let (client, server) = tokio::io::duplex(64);
        let task = tokio::spawn(serve(server));
        let (mut r, mut w) = tokio::io::split(client);
        w.write_all(b"ping").await.unwrap();
        w.shutdown().await.unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        task.await.unwrap().unwrap();
    }
}
