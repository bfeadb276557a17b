//! Optional TLS for the HTTP listener (`http.tls_cert_file`, `http.tls_key_file`: PEM), with
//! rustls on the ring provider the rest of vigil uses.
//!
//! [`TlsAcceptor`] accepts TCP connections in a task of its own and runs each handshake in
//! its own task (bounded by [`HANDSHAKE_TIMEOUT`]), so a client that opens a connection and
//! never finishes its handshake holds up nobody else. Finished connections are handed to the
//! server as `https`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// A handshake not finished within this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const BACKLOG: usize = 128;

/// Builds the server configuration from PEM text: the certificate chain (leaf first) and its
/// private key (PKCS#8, PKCS#1 or SEC1). The error says which part is wrong, never the key.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("http.tls_cert: not a PEM certificate chain ({e})"))?;
    if certs.is_empty() {
        return Err("http.tls_cert: no certificate found in the PEM text".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("http.tls_key: not a PEM private key ({e})"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("http.tls_key: does not fit http.tls_cert ({e})"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Accepted = (TlsStream<TcpStream>, LocalAddr, RemoteAddr);

/// TLS over a bound TCP acceptor (see the module doc).
pub struct TlsAcceptor {
    local: Vec<LocalAddr>,
    accepted: mpsc::Receiver<io::Result<Accepted>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsAcceptor {
    /// Starts accepting on `tcp` with `config`.
    pub fn new(mut tcp: TcpAcceptor, config: Arc<ServerConfig>) -> TlsAcceptor {
        let local = tcp.local_addr();
        let (tx, accepted) = mpsc::channel(BACKLOG);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (stream, local, remote, _) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok((stream, local, remote))).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        TlsAcceptor {
            local,
            accepted,
            task,
        }
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acceptor for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local.clone()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        match self.accepted.recv().await {
            Some(Ok((io, local, remote))) => Ok((io, local, remote, Scheme::HTTPS)),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::other("the TLS accept task stopped")),
        }
    }
}
