//! `vigil healthcheck`: the container probe. `GET /health` on this host's `http.listen` (or
//! `--url`), exit 0 on a 200 and 1 otherwise, with one line saying why. It needs no shell
//! and no curl, so the slim image can use it (`HEALTHCHECK CMD ["vigil", "healthcheck"]`).

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Settings;

/// How long the probe waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Probes `url` (`http://HOST:PORT/PATH`), or `http.listen`'s `/health`.
pub async fn run(settings: &Settings, url: Option<&str>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            // A wildcard bind is reached on the loopback address.
            let listen = settings
                .http
                .listen
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            format!("http://{listen}/health")
        }
    };
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url}: only http:// URLs are probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let status = tokio::time::timeout(TIMEOUT, get(authority, path))
        .await
        .with_context(|| format!("{url}: no answer within {} s", TIMEOUT.as_secs()))?
        .with_context(|| format!("{url} is not answering"))?;
    if status != 200 {
        bail!("{url} answered {status}");
    }
    println!("{url}: ok");
    Ok(())
}

/// The status code of `GET path` on `authority` (HTTP/1.0, so the server closes).
async fn get(authority: &str, path: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}
