//! Discard (RFC 863): everything received is dropped; our side closes after the peer's FIN.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

/// Reads `stream` to its end, then closes; returns how many bytes were discarded.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<u64> {
    let n = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await?;
    stream.shutdown().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn counts_and_closes() {
        let (mut client, server) = tokio::io::duplex(64);
        let task = tokio::spawn(serve(server));
        client.write_all(&[0u8; 1000]).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert!(back.is_empty());
        assert_eq!(task.await.unwrap().unwrap(), 1000);
    }
}
