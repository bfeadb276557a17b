//! vigil's SMTP connection pool: lettre's SMTP client over sockets with `TCP_NODELAY`.
//!
//! Why not lettre's pooled `AsyncSmtpTransport`: lettre writes a message's body and its final
//! `\r\n.\r\n` in two writes, on a socket it opened without `TCP_NODELAY`. Nagle's algorithm
//! holds the five bytes until the server acknowledges the body, and the server delays that
//! ACK (about 40 ms on Linux), so every message waits and one connection sends some 25
//! messages a second however fast the server is. [`SmtpPool`] opens the TCP socket itself,
//! sets `TCP_NODELAY`, and hands the socket to lettre's [`AsyncSmtpConnection`], which speaks
//! SMTP over it.
//!
//! A new connection goes through what lettre's transport does, in the same order:
//! 1. TCP connect to each address `host:port` resolves to in turn, each bounded by the
//!    connect timeout (`smtp.timeout_seconds`);
//! 2. with [`Tls::Wrapper`] the TLS handshake comes first; then the greeting and `EHLO`;
//! 3. [`Tls::Required`]: `STARTTLS` (an error if the server does not offer it);
//!    [`Tls::Opportunistic`]: `STARTTLS` if the server offers it;
//! 4. `AUTH` with the credentials, if any: PLAIN, else LOGIN (lettre's default mechanisms).
//!
//! The pool, as lettre's: a send takes the idle connection returned last and checks it with
//! `NOOP` (one that fails is closed and the next one tried), or opens a new one. After the
//! send the connection goes back to the pool, unless it broke (lettre closes a connection
//! after a failed command) or `max_idle` connections are idle already (it is then closed with
//! `QUIT`): the limit is on connections kept, not on sends in flight. A connection idle for
//! [`IDLE_TIMEOUT`] is closed with `QUIT`, by a background task (which ends with the pool) or
//! by the next send that finds it. A send that is cancelled (the mailer's deadline) drops its
//! connection mid-dialogue: it is never reused. Dropping the pool closes its idle connections
//! with `QUIT`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
#[allow(deprecated)] // lettre's only way to run its TLS handshake on a socket of ours.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Tls};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::{Code, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long an idle connection is kept (lettre's pool default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a `QUIT` of a connection nobody waits for may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the pool connects, and how.
#[derive(Clone)]
pub struct SmtpEndpoint {
    /// Host name (resolved at each connect; also the TLS name in `tls`'s parameters).
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// `AUTH` after connecting (and after TLS), when set.
    pub credentials: Option<Credentials>,
    /// Bound of each TCP connect attempt.
    pub connect_timeout: Duration,
}

/// A failed [`SmtpPool::send`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No TCP connection: the name did not resolve, the server refused, or the connect timed
    /// out. (lettre reports these as its own `Connection error`, worded the same.)
    #[error("Connection error: {0}")]
    Connect(#[source] io::Error),
    /// Everything after the TCP connect: TLS, the dialogue, the server's replies.
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl SendError {
    /// The server's reply code, for a negative reply.
    pub fn status(&self) -> Option<Code> {
        match self {
            SendError::Connect(_) => None,
            SendError::Smtp(e) => e.status(),
        }
    }

    /// A permanent (5xx) reply.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Smtp(e) if e.is_permanent())
    }
}

/// A pool of SMTP connections to one server (see the module docs). Cheap to clone: clones
/// share the connections.
#[derive(Clone)]
pub struct SmtpPool {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: SmtpEndpoint,
    hello: ClientId,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    reaper: Once,
}

/// A connection and whether its socket has `TCP_NODELAY` (as the kernel reports it).
struct Conn {
    smtp: AsyncSmtpConnection,
    #[cfg_attr(not(test), allow(dead_code))] // Checked by the tests.
    nodelay: bool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.shared.endpoint;
        f.debug_struct("SmtpPool")
            .field("host", &e.host)
            .field("port", &e.port)
            .field("max_idle", &self.shared.max_idle)
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    /// A pool keeping at most `max_idle` (at least 1) idle connections to `endpoint`.
    /// Nothing connects until the first send.
    pub fn new(endpoint: SmtpEndpoint, max_idle: usize) -> SmtpPool {
        SmtpPool::with_idle_timeout(endpoint, max_idle, IDLE_TIMEOUT)
    }

    pub(crate) fn with_idle_timeout(
        endpoint: SmtpEndpoint,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> SmtpPool {
        SmtpPool {
            shared: Arc::new(Shared {
                endpoint,
                // The host name, as lettre's transport says it in EHLO.
                hello: ClientId::default(),
                max_idle: max_idle.max(1),
                idle_timeout,
                idle: Mutex::new(Vec::new()),
                reaper: Once::new(),
            }),
        }
    }

    /// Sends `message` (headers and body, as formatted) to `envelope`'s recipients over a
    /// pooled connection. Unbounded but for the connect: callers set the deadline.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        let mut conn = self.checkout().await?;
        let sent = conn.smtp.send(envelope, message).await;
        self.give_back(conn);
        Ok(sent?)
    }

    /// An idle connection that answers `NOOP`, or a new one.
    async fn checkout(&self) -> Result<Conn, SendError> {
        loop {
            let idle = self.shared.idle().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return self.shared.connect().await;
            };
            if since.elapsed() >= self.shared.idle_timeout {
                spawn_close(vec![conn]);
                continue;
            }
            if conn.smtp.test_connected().await {
                return Ok(conn);
            }
            tracing::debug!("an idle SMTP connection no longer answers; closing it");
            spawn_close(vec![conn]);
        }
    }

    /// Parks `conn` for the next send, or closes it.
    fn give_back(&self, conn: Conn) {
        if conn.smtp.has_broken() {
            // lettre has sent QUIT and closed it already.
            return;
        }
        let surplus = {
            let mut idle = self.shared.idle();
            if idle.len() < self.shared.max_idle {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
                None
            } else {
                Some(conn)
            }
        };
        match surplus {
            Some(conn) => spawn_close(vec![conn]),
            None => self.start_reaper(),
        }
    }

    /// Starts the task that closes idle connections, once per pool.
    fn start_reaper(&self) {
        self.shared.reaper.call_once(|| {
            let shared = Arc::downgrade(&self.shared);
            let every = (self.shared.idle_timeout / 2).max(Duration::from_millis(10));
            tokio::spawn(reap(shared, every));
        });
    }

    /// Whether each idle connection's socket has `TCP_NODELAY`, most recent last.
    #[cfg(test)]
    pub(crate) fn idle_nodelay(&self) -> Vec<bool> {
        self.shared.idle().iter().map(|i| i.conn.nodelay).collect()
    }
}

impl Shared {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection: TCP with `TCP_NODELAY`, then TLS, EHLO and AUTH as configured.
    async fn connect(&self) -> Result<Conn, SendError> {
        let e = &self.endpoint;
        let tcp = tcp_connect(&e.host, e.port, e.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        tcp.set_nodelay(true).map_err(SendError::Connect)?;
        let nodelay = tcp.nodelay().unwrap_or(false);
        let mut smtp = match &e.tls {
            Tls::Wrapper(params) => {
                #[allow(deprecated)]
                let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
                stream.upgrade_tls(params.clone()).await?;
                let stream = Box::new(TlsFirst(stream));
                AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?,
        };
        match &e.tls {
            Tls::Required(params) => smtp.starttls(params.clone(), &self.hello).await?,
            Tls::Opportunistic(params) if smtp.can_starttls() => {
                smtp.starttls(params.clone(), &self.hello).await?
            }
            _ => {}
        }
        if let Some(credentials) = &e.credentials {
            smtp.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        tracing::debug!(host = %e.host, port = e.port, "SMTP connection opened");
        Ok(Conn { smtp, nodelay })
    }

    /// Takes the connections idle for the idle timeout or longer.
    fn take_expired(&self) -> Vec<Conn> {
        let mut idle = self.idle();
        let (expired, kept): (Vec<Idle>, Vec<Idle>) = idle
            .drain(..)
            .partition(|i| i.since.elapsed() >= self.idle_timeout);
        *idle = kept;
        expired.into_iter().map(|i| i.conn).collect()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            spawn_close(idle.into_iter().map(|i| i.conn).collect());
        }
    }
}

/// Closes expired idle connections every `every`, until the pool is gone.
async fn reap(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let expired = shared.take_expired();
        drop(shared);
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "closing idle SMTP connections");
            close(expired).await;
        }
    }
}

fn spawn_close(conns: Vec<Conn>) {
    tokio::spawn(close(conns));
}

/// `QUIT` and close, each bounded: a stalled server only delays its own connection's end.
async fn close(conns: Vec<Conn>) {
    for mut conn in conns {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.smtp.abort()).await;
    }
}

/// A TCP connection to the first address of `host:port` that accepts within `timeout`.
async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("could not resolve to any address")))
}

/// A socket on which lettre already ran the TLS handshake (implicit TLS), handed back to
/// lettre as a plain stream: [`AsyncSmtpConnection::connect_with_transport`] reads the
/// greeting on whatever stream it is given, and only lettre can build a TLS stream from its
/// `TlsParameters`. (lettre then takes the connection for unencrypted, which only matters to
/// `STARTTLS`, never sent on it.)
#[allow(deprecated)]
#[derive(Debug)]
struct TlsFirst(AsyncNetworkStream);

impl AsyncRead for TlsFirst {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(futures::AsyncRead::poll_read(
            Pin::new(&mut self.0),
            cx,
            buf.initialize_unfilled()
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TlsFirst {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for TlsFirst {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

#[cfg(test)]
mod tests;
