//! A real SMTP server for tests, in-process on `127.0.0.1:<free port>`.
//!
//! It speaks enough RFC 5321 for a real client (lettre) to deliver to it: greeting, EHLO/HELO,
//! MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT. Tests can:
//! - read what arrived ([`SmtpServer::messages`], [`SmtpServer::wait_for`]): envelope and the
//!   raw message exactly as sent;
//! - inject replies ([`SmtpServer::inject`]): e.g. `450` at RCPT twice, or `550` at DATA
//!   always;
//! - make the server slow ([`SmtpServer::delay_data`]): accept, but reply to DATA late;
//! - take it down and up again ([`SmtpServer::stop`], [`SmtpServer::restart`]) on the same
//!   port: while down, connections are refused and open ones are closed;
//! - count connections and `QUIT`s ([`SmtpServer::connections`], [`SmtpServer::quits`]).
//!
//! [`SmtpServer::start_with`] makes it secure its sessions as a submission server does
//! ([`SmtpOptions`]): `STARTTLS` (required before `MAIL`) or TLS from the first byte, with a
//! certificate for `127.0.0.1` / `localhost` from a throwaway CA ([`SmtpServer::ca_pem`]), and
//! `AUTH PLAIN` (required before `MAIL`) with one user and password.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `MAIL FROM` address (without angle brackets).
    pub mail_from: String,
    /// The `RCPT TO` addresses, in order.
    pub rcpt_to: Vec<String>,
    /// The message (headers and body) after dot-unstuffing, lines ending in CRLF.
    pub data: String,
}

impl Received {
    /// The value of the first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_owned());
            }
        }
        found
    }
}

/// One leaf part of a received message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `text/plain`, `text/html`, ... (lower case, without parameters).
    pub content_type: String,
    /// The body after undoing its transfer encoding (quoted-printable, base64).
    pub body: String,
}

impl Received {
    /// The leaf parts (a single-part message gives one), bodies decoded.
    pub fn parts(&self) -> Vec<Part> {
        let mut out = Vec::new();
        collect_parts(&self.data, &mut out);
        out
    }

    /// The decoded body of the first part of type `content_type`.
    pub fn part(&self, content_type: &str) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type == content_type)
            .map(|p| p.body)
    }
}

/// Splits an entity into its header block and body.
fn split_entity(entity: &str) -> (&str, &str) {
    match entity.find("\r\n\r\n") {
        Some(i) => (&entity[..i], &entity[i + 4..]),
        None => (entity, ""),
    }
}

/// A header of a header block, unfolded.
fn header_in(head: &str, name: &str) -> Option<String> {
    Received {
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: format!("{head}\r\n\r\n"),
    }
    .header(name)
}

fn collect_parts(entity: &str, out: &mut Vec<Part>) {
    let (head, body) = split_entity(entity);
    let ctype = header_in(head, "Content-Type").unwrap_or_else(|| "text/plain".to_owned());
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let boundary = ctype.split(';').skip(1).find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case("boundary")
                .then(|| v.trim_matches('"').to_owned())
        });
        let Some(boundary) = boundary else { return };
        let delim = format!("--{boundary}");
        for chunk in body.split(delim.as_str()).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
            let chunk = chunk.strip_suffix("\r\n").unwrap_or(chunk);
            collect_parts(chunk, out);
        }
        return;
    }
    let encoding = header_in(head, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => {
            use base64::Engine as _;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        _ => body.to_owned(),
    };
    out.push(Part {
        content_type: mime,
        body: decoded,
    });
}

/// Undoes quoted-printable (RFC 2045 6.7): `=XX` bytes and `=` soft line breaks.
fn decode_qp(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if let Some(hex) = s.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where in the transaction an injected reply is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In answer to `MAIL FROM`.
    Mail,
    /// In answer to each `RCPT TO`.
    Rcpt,
    /// In answer to the end of `DATA` (the message is then not kept).
    Data,
}

#[derive(Debug, Clone)]
struct Injection {
    stage: Stage,
    reply: String,
    /// How many more times; `None` for always.
    remaining: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    messages: Vec<Received>,
    injections: Vec<Injection>,
    data_delay: Option<Duration>,
    connections: u64,
    data_ended: u64,
    quits: u64,
}

/// How a server from [`SmtpServer::start_with`] secures its sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SmtpTlsMode {
    /// Plain text only (what [`SmtpServer::start`] serves).
    #[default]
    None,
    /// Plain text upgraded by `STARTTLS`, which `MAIL` requires.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// What [`SmtpServer::start_with`] asks of its clients.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    pub tls: SmtpTlsMode,
    /// `AUTH PLAIN` with this user and password, required before `MAIL`.
    pub auth: Option<(String, String)>,
}

/// The options, with the TLS acceptor built.
struct Security {
    tls: SmtpTlsMode,
    acceptor: Option<TlsAcceptor>,
    auth: Option<(String, String)>,
}

/// The server. Stops when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Option<watch::Sender<bool>>,
    security: Arc<Security>,
    ca_pem: Option<String>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl SmtpServer {
    /// Starts a plain-text server without AUTH on a free port of 127.0.0.1.
    pub async fn start() -> SmtpServer {
        SmtpServer::start_with(SmtpOptions::default()).await
    }

    /// Starts a server asking for `options` on a free port of 127.0.0.1.
    pub async fn start_with(options: SmtpOptions) -> SmtpServer {
        let (acceptor, ca_pem) = match options.tls {
            SmtpTlsMode::None => (None, None),
            SmtpTlsMode::Starttls | SmtpTlsMode::Implicit => {
                let certs = crate::certs::server_certs();
                (Some(acceptor(&certs)), Some(certs.ca_pem))
            }
        };
        let listener = bind("127.0.0.1:0".parse().expect("an address")).await;
        let addr = listener.local_addr().expect("a local address");
        let mut server = SmtpServer {
            addr,
            state: Arc::new(Mutex::new(State::default())),
            running: None,
            security: Arc::new(Security {
                tls: options.tls,
                acceptor,
                auth: options.auth,
            }),
            ca_pem,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = watch::channel(true);
        self.running = Some(tx);
        tokio::spawn(accept_loop(
            listener,
            self.state.clone(),
            self.security.clone(),
            rx,
        ));
    }

    /// The PEM of the CA that signed the server's certificate (TLS modes only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// How many `QUIT` commands arrived so far.
    pub fn quits(&self) -> u64 {
        lock(&self.state).quits
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        lock(&self.state).messages.clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        lock(&self.state).connections
    }

    /// Waits until at least `n` messages arrived (or `timeout` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n || tokio::time::Instant::now() >= deadline {
                return msgs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Answers `stage` with `reply` (e.g. `"550 5.1.1 no such user"`), `times` times, or
    /// always with `None`. Injections are used in the order they were added.
    pub fn inject(&self, stage: Stage, reply: &str, times: Option<usize>) {
        lock(&self.state).injections.push(Injection {
            stage,
            reply: reply.to_owned(),
            remaining: times,
        });
    }

    /// Removes every injected reply.
    pub fn clear_injections(&self) {
        lock(&self.state).injections.clear();
    }

    /// How many messages were transmitted up to the end of DATA (answered or not yet: a
    /// client in [`SmtpServer::delay_data`]'s wait is mid-send).
    pub fn data_ended(&self) -> u64 {
        lock(&self.state).data_ended
    }

    /// Waits `delay` before answering the end of DATA (the message is accepted).
    pub fn delay_data(&self, delay: Option<Duration>) {
        lock(&self.state).data_delay = delay;
    }

    /// Takes the server down: the port refuses connections, open sessions are closed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.running.take() {
            let _ = tx.send(false);
            // Wait until the listener is gone.
            tx.closed().await;
        }
    }

    /// Brings a stopped server back on the same port.
    pub async fn restart(&mut self) {
        if self.running.is_some() {
            return;
        }
        let listener = bind(self.addr).await;
        self.serve(listener);
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.running.take() {
            let _ = tx.send(false);
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    // The port may still hold connections in TIME_WAIT after a stop: reuse it anyway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        match socket.bind(addr).and_then(|()| socket.listen(128)) {
            Ok(listener) => return listener,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot listen on {addr}: {e}"),
        }
    }
}

/// A TLS acceptor serving the certificate of `certs`.
fn acceptor(certs: &crate::certs::ServerCerts) -> TlsAcceptor {
    let chain = CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the test certificate");
    let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).expect("the test key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a server config");
    TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    security: Arc<Security>,
    running: watch::Receiver<bool>,
) {
    let mut stopped = running.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                lock(&state).connections += 1;
                let state = state.clone();
                let security = security.clone();
                let mut stop = running.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = session(stream, state, security) => {}
                        _ = stop.wait_for(|up| !*up) => {}
                    }
                });
            }
            _ = stopped.wait_for(|up| !*up) => return,
        }
    }
}

/// The reply injected for `stage`, if any (consuming one use).
fn injected(state: &Mutex<State>, stage: Stage) -> Option<String> {
    let mut st = lock(state);
    let i = st.injections.iter().position(|inj| inj.stage == stage)?;
    let reply = st.injections[i].reply.clone();
    if let Some(n) = st.injections[i].remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.injections.remove(i);
        }
    }
    Some(reply)
}

/// The address inside `FROM:<a@b> SIZE=..` / `TO:<a@b>`.
fn path_arg(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if b > a => rest[a + 1..b].to_owned(),
        _ => rest.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

const MAX_LINE: usize = 1 << 20;

async fn session(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    security: Arc<Security>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let Some(acceptor) = &security.acceptor else {
        return dialogue(stream, &state, &security, false, true)
            .await
            .map(drop);
    };
    if security.tls == SmtpTlsMode::Implicit {
        let stream = acceptor.accept(stream).await?;
        return dialogue(stream, &state, &security, true, true)
            .await
            .map(drop);
    }
    if let Some(stream) = dialogue(stream, &state, &security, false, true).await? {
        let stream = acceptor.accept(stream).await?;
        dialogue(stream, &state, &security, true, false).await?;
    }
    Ok(())
}

/// Writes one reply in one write (split writes meet Nagle + delayed ACK: 40 ms stalls).
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(format!("{text}\r\n").as_bytes()).await?;
    stream.flush().await
}

/// Whether `AUTH PLAIN`'s response (base64 of `authzid\0user\0password`) names `user`.
fn plain_matches(response: &str, user: &str, password: &str) -> bool {
    use base64::Engine as _;
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(response.trim()) else {
        return false;
    };
    let mut fields = decoded.split(|b| *b == 0);
    let _authzid = fields.next();
    fields.next() == Some(user.as_bytes())
        && fields.next() == Some(password.as_bytes())
        && fields.next().is_none()
}

/// One session's commands on `stream` (`encrypted`: TLS is on). Returns the stream when
/// the client asked for `STARTTLS`, for the handshake.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: &Mutex<State>,
    security: &Security,
    encrypted: bool,
    greet: bool,
) -> std::io::Result<Option<S>> {
    let mut io = BufReader::new(stream);
    if greet {
        reply(&mut io, "220 vigil-testkit ESMTP ready").await?;
    }
    let starttls_due = security.tls == SmtpTlsMode::Starttls && !encrypted;
    let mut authenticated = false;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE {
            reply(&mut io, "500 5.5.2 line too long").await?;
            return Ok(None);
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let (verb, rest) = match cmd.split_once(' ') {
            Some((v, r)) => (v.to_ascii_uppercase(), r),
            None => (cmd.to_ascii_uppercase(), ""),
        };
        let answer: String = match verb.as_str() {
            "EHLO" => {
                let mut ehlo =
                    format!("250-vigil-testkit greets {rest}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n");
                if starttls_due {
                    ehlo.push_str("250-STARTTLS\r\n");
                }
                if security.auth.is_some() {
                    ehlo.push_str("250-AUTH PLAIN\r\n");
                }
                ehlo.push_str("250 SIZE 26214400");
                ehlo
            }
            "HELO" => format!("250 vigil-testkit greets {rest}"),
            "STARTTLS" if starttls_due => {
                reply(&mut io, "220 2.0.0 Ready to start TLS").await?;
                return Ok(Some(io.into_inner()));
            }
            "AUTH" if security.auth.is_some() => {
                let (mechanism, initial) = rest.split_once(' ').unwrap_or((rest, ""));
                if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    "504 5.5.4 mechanism not supported".to_owned()
                } else {
                    let mut response = initial.to_owned();
                    if response.is_empty() {
                        reply(&mut io, "334 ").await?;
                        line.clear();
                        if io.read_line(&mut line).await? == 0 {
                            return Ok(None);
                        }
                        response = line.trim_end().to_owned();
                    }
                    let (user, password) = security.auth.as_ref().expect("AUTH is on");
                    if plain_matches(&response, user, password) {
                        authenticated = true;
                        "235 2.7.0 Authentication successful".to_owned()
                    } else {
                        "535 5.7.8 Authentication credentials invalid".to_owned()
                    }
                }
            }
            "MAIL" if starttls_due => "530 5.7.0 Must issue a STARTTLS command first".to_owned(),
            "MAIL" if security.auth.is_some() && !authenticated => {
                "530 5.7.0 Authentication required".to_owned()
            }
            "MAIL" => match injected(state, Stage::Mail) {
                Some(r) => r,
                None => {
                    let upper = rest.to_ascii_uppercase();
                    if !upper.starts_with("FROM:") {
                        "501 5.5.4 syntax: MAIL FROM:<address>".to_owned()
                    } else {
                        from = Some(path_arg(&rest[5..]));
                        rcpts.clear();
                        "250 2.1.0 Ok".to_owned()
                    }
                }
            },
            "RCPT" => {
                if from.is_none() {
                    "503 5.5.1 need MAIL first".to_owned()
                } else if let Some(r) = injected(state, Stage::Rcpt) {
                    r
                } else if !rest.to_ascii_uppercase().starts_with("TO:") {
                    "501 5.5.4 syntax: RCPT TO:<address>".to_owned()
                } else {
                    rcpts.push(path_arg(&rest[3..]));
                    "250 2.1.5 Ok".to_owned()
                }
            }
            "DATA" => {
                if rcpts.is_empty() {
                    "503 5.5.1 need RCPT first".to_owned()
                } else {
                    reply(&mut io, "354 End data with <CR><LF>.<CR><LF>").await?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if io.read_line(&mut line).await? == 0 {
                            return Ok(None);
                        }
                        if data.len() > 50 * MAX_LINE {
                            reply(&mut io, "552 5.3.4 message too big").await?;
                            return Ok(None);
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                        // Dot-unstuffing (RFC 5321 4.5.2).
                        let text = line.strip_prefix('.').unwrap_or(&line);
                        data.push_str(text);
                    }
                    let delay = {
                        let mut st = lock(state);
                        st.data_ended += 1;
                        st.data_delay
                    };
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    let envelope_from = from.take().unwrap_or_default();
                    let envelope_to = std::mem::take(&mut rcpts);
                    match injected(state, Stage::Data) {
                        Some(r) => r,
                        None => {
                            let mut st = lock(state);
                            st.messages.push(Received {
                                mail_from: envelope_from,
                                rcpt_to: envelope_to,
                                data,
                            });
                            format!("250 2.0.0 Ok: queued as M{}", st.messages.len())
                        }
                    }
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 Ok".to_owned()
            }
            "NOOP" => "250 2.0.0 Ok".to_owned(),
            "VRFY" => "252 2.1.5 cannot verify".to_owned(),
            "QUIT" => {
                lock(state).quits += 1;
                reply(&mut io, "221 2.0.0 Bye").await?;
                return Ok(None);
            }
            _ => "502 5.5.2 command not recognized".to_owned(),
        };
        reply(&mut io, &answer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_and_unfolded() {
        let r = Received {
            mail_from: "a@b.c".into(),
            rcpt_to: vec![],
            data: "Subject: one\r\n two\r\nFrom: a@b.c\r\n\r\nSubject: body\r\n".into(),
        };
        assert_eq!(r.header("subject").as_deref(), Some("one two"));
        assert_eq!(r.header("FROM").as_deref(), Some("a@b.c"));
        assert_eq!(r.header("To"), None);
        assert_eq!(path_arg("FROM:<x@y.z> SIZE=10"[5..].as_ref()), "x@y.z");
        assert_eq!(decode_qp("a=3Db=\r\nc =C3=A9"), "a=bc \u{e9}");
        let m = Received {
            mail_from: String::new(),
            rcpt_to: vec![],
            data: "Content-Type: multipart/alternative;\r\n boundary=\"XX\"\r\n\r\n--XX\r\n\
                   Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\n\
                   Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--XX--\r\n"
                .into(),
        };
        assert_eq!(m.part("text/plain").as_deref(), Some("hello"));
        assert_eq!(m.part("text/html").as_deref(), Some("<b>hi</b>"));
    }
}
