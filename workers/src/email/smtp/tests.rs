//! The pool against the test kit's real SMTP server (in-process, on loopback): one connection
//! reused for sequential sends with `TCP_NODELAY` on its socket; a connection the server
//! closed, one that failed a command, one idle too long and one beyond `max_idle` are not
//! reused; STARTTLS, implicit TLS and AUTH as lettre's transport does them; a refused connect
//! is a `Connection error`.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use vigil_testkit::smtp::{SmtpOptions, SmtpServer, SmtpTlsMode, Stage};

use super::{SendError, SmtpEndpoint, SmtpPool};

fn endpoint(server: &SmtpServer, tls: Tls) -> SmtpEndpoint {
    SmtpEndpoint {
        host: "127.0.0.1".into(),
        port: server.port(),
        tls,
        credentials: None,
        connect_timeout: Duration::from_secs(5),
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        Some("vigil@example.com".parse().unwrap()),
        vec!["soc@example.com".parse().unwrap()],
    )
    .unwrap()
}

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: vigil@example.com\r\nTo: soc@example.com\r\nSubject: pool {i}\r\n\r\nmessage {i}\r\n"
    )
    .into_bytes()
}

/// TLS parameters for `127.0.0.1` trusting only the CA in `ca_pem`.
fn trusting(ca_pem: &str) -> TlsParameters {
    TlsParameters::builder("127.0.0.1".into())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: never");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_sends_share_one_connection_whose_socket_has_nodelay() {
    let server = SmtpServer::start().await;
    let pool = SmtpPool::new(endpoint(&server, Tls::None), 1);
    for i in 0..20 {
        let reply = pool.send(&envelope(), &message(i)).await.unwrap();
        assert_eq!(reply.code().to_string(), "250", "send {i}");
    }
    let got = server.messages();
    assert_eq!(got.len(), 20);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.header("Subject"), Some(format!("pool {i}")));
        assert_eq!(m.rcpt_to, ["soc@example.com"]);
    }
    assert_eq!(server.connections(), 1, "one connection for 20 sends");
    assert_eq!(pool.idle_nodelay(), [true], "TCP_NODELAY on its socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_is_replaced() {
    let mut server = SmtpServer::start().await;
    let pool = SmtpPool::new(endpoint(&server, Tls::None), 1);
    pool.send(&envelope(), &message(0)).await.unwrap();
    // Closes the pooled connection's session (and listens again on the same port).
    server.stop().await;
    server.restart().await;
    pool.send(&envelope(), &message(1)).await.unwrap();
    assert_eq!(server.messages().len(), 2);
    assert_eq!(
        server.connections(),
        2,
        "a new connection replaced the closed one"
    );
    assert_eq!(pool.idle_nodelay(), [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_failed_a_command_is_not_reused() {
    let server = SmtpServer::start().await;
    let pool = SmtpPool::new(endpoint(&server, Tls::None), 1);
    server.inject(Stage::Rcpt, "550 5.1.1 no such user", Some(1));
    let err = pool.send(&envelope(), &message(0)).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.status().map(|c| c.to_string()).as_deref(), Some("550"));
    assert_eq!(
        server.quits(),
        1,
        "lettre ends a failed transaction with QUIT"
    );
    assert!(pool.idle_nodelay().is_empty(), "not parked");

    server.inject(Stage::Data, "451 4.3.0 try again later", Some(1));
    let err = pool.send(&envelope(), &message(1)).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert_eq!(err.status().map(|c| c.to_string()).as_deref(), Some("451"));

    pool.send(&envelope(), &message(2)).await.unwrap();
    assert_eq!(server.messages().len(), 1);
    assert_eq!(
        server.connections(),
        3,
        "one connection per failure, then a new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_with_quit_after_the_idle_timeout() {
    let server = SmtpServer::start().await;
    let pool =
        SmtpPool::with_idle_timeout(endpoint(&server, Tls::None), 2, Duration::from_millis(200));
    pool.send(&envelope(), &message(0)).await.unwrap();
    eventually("the idle connection is closed", || server.quits() == 1).await;
    assert!(pool.idle_nodelay().is_empty());
    pool.send(&envelope(), &message(1)).await.unwrap();
    assert_eq!(server.connections(), 2);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_idle_are_closed_after_their_send() {
    let server = SmtpServer::start().await;
    let pool = SmtpPool::new(endpoint(&server, Tls::None), 1);
    // Two sends in flight at once: the pool has nothing idle for either.
    let (envelope, first, second) = (envelope(), message(0), message(1));
    let (a, b) = tokio::join!(pool.send(&envelope, &first), pool.send(&envelope, &second));
    a.unwrap();
    b.unwrap();
    assert_eq!(server.connections(), 2);
    eventually("the surplus connection is closed", || server.quits() == 1).await;
    assert_eq!(pool.idle_nodelay(), [true], "one kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_auth_then_messages_over_one_connection() {
    let server = SmtpServer::start_with(SmtpOptions {
        tls: SmtpTlsMode::Starttls,
        auth: Some(("vigil".into(), "s3cret pass".into())),
    })
    .await;
    let mut e = endpoint(&server, Tls::Required(trusting(server.ca_pem().unwrap())));
    e.credentials = Some(Credentials::new("vigil".into(), "s3cret pass".into()));
    let pool = SmtpPool::new(e, 1);
    // The server refuses MAIL before STARTTLS and before AUTH: arriving proves both.
    for i in 0..3 {
        pool.send(&envelope(), &message(i)).await.unwrap();
    }
    assert_eq!(server.messages().len(), 3);
    assert_eq!(server.connections(), 1);
    assert_eq!(pool.idle_nodelay(), [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_then_auth_then_messages_over_one_connection() {
    let server = SmtpServer::start_with(SmtpOptions {
        tls: SmtpTlsMode::Implicit,
        auth: Some(("vigil".into(), "s3cret".into())),
    })
    .await;
    let mut e = endpoint(&server, Tls::Wrapper(trusting(server.ca_pem().unwrap())));
    e.credentials = Some(Credentials::new("vigil".into(), "s3cret".into()));
    let pool = SmtpPool::new(e, 1);
    for i in 0..3 {
        pool.send(&envelope(), &message(i)).await.unwrap();
    }
    let got = server.messages();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].header("Subject").as_deref(), Some("pool 2"));
    assert_eq!(server.connections(), 1);
    assert_eq!(pool.idle_nodelay(), [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth_refusals_are_errors_and_opportunistic_tls_falls_back() {
    let secure = SmtpServer::start_with(SmtpOptions {
        tls: SmtpTlsMode::Starttls,
        auth: Some(("vigil".into(), "right".into())),
    })
    .await;
    let ca = secure.ca_pem().unwrap().to_owned();

    // A wrong password: the server's 535, permanent.
    let mut e = endpoint(&secure, Tls::Required(trusting(&ca)));
    e.credentials = Some(Credentials::new("vigil".into(), "wrong".into()));
    let err = SmtpPool::new(e, 1)
        .send(&envelope(), &message(0))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|c| c.to_string()).as_deref(), Some("535"));
    assert!(err.is_permanent(), "{err}");

    // A certificate from a CA the client does not trust: no session.
    let stranger = vigil_testkit::certs::server_certs().ca_pem;
    let e = endpoint(&secure, Tls::Required(trusting(&stranger)));
    let err = SmtpPool::new(e, 1)
        .send(&envelope(), &message(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Smtp(_)), "{err}");
    assert!(secure.messages().is_empty());

    // Required STARTTLS on a server that does not offer it: refused before MAIL.
    let plain = SmtpServer::start().await;
    let err = SmtpPool::new(endpoint(&plain, Tls::Required(trusting(&ca))), 1)
        .send(&envelope(), &message(2))
        .await
        .unwrap_err();
    assert!(matches!(&err, SendError::Smtp(e) if e.is_client()), "{err}");
    assert!(plain.messages().is_empty());

    // Opportunistic STARTTLS on that server: plain text.
    SmtpPool::new(endpoint(&plain, Tls::Opportunistic(trusting(&ca))), 1)
        .send(&envelope(), &message(3))
        .await
        .unwrap();
    assert_eq!(plain.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = SmtpPool::new(
        SmtpEndpoint {
            host: "127.0.0.1".into(),
            port,
            tls: Tls::None,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
        },
        1,
    );
    let err = pool.send(&envelope(), &message(0)).await.unwrap_err();
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
    assert!(err.to_string().starts_with("Connection error: "), "{err}");
    assert_eq!(err.status(), None);
    assert!(!err.is_permanent());
}
