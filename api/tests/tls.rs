//! HTTPS on the API listener (rustls) with HSTS; bad TLS settings are named errors.

mod common;

use common::TestApp;
use secrecy::SecretString;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_speaks_tls_and_sends_hsts() {
    let certs = vigil_testkit::certs::server_certs();
    let (cert, key) = (certs.cert_pem.clone(), certs.key_pem.clone());
    let app = TestApp::with(move |s| {
        s.http.tls_cert = Some(cert);
        s.http.tls_key = Some(SecretString::from(key));
    })
    .await;
    let served = app.serve().await;
    assert!(served.base.starts_with("https://"), "{}", served.base);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/health", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    // A client that does not trust the CA is refused by its own check; plain HTTP gets no
    // answer from the TLS port.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            vigil_testkit::certs::server_certs().ca_pem.as_bytes(),
        )
        .unwrap()])
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{}/health", served.base))
            .send()
            .await
            .is_err()
    );
    let plain = served.base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new()
        .get(format!("{plain}/health"))
        .send()
        .await;
    assert!(answer.is_err(), "{answer:?}");
    // The listener still serves after those failed handshakes.
    let resp = client
        .get(format!("{}/health", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn plain_http_has_no_hsts_and_bad_tls_settings_name_their_key() {
    let app = TestApp::new().await;
    let a = app.get("/health", None).await;
    assert!(a.header("strict-transport-security").is_none());

    let certs = vigil_testkit::certs::server_certs();
    let mut http = vigil_api::HttpSettings {
        tls_cert: Some(certs.cert_pem.clone()),
        ..Default::default()
    };
    assert!(http.tls_config().unwrap_err().starts_with("http.tls_key"));
    http.tls_key = Some(SecretString::from("not a key"));
    assert!(http.tls_config().unwrap_err().starts_with("http.tls_key"));
    http.tls_cert = Some("not a certificate".into());
    http.tls_key = Some(SecretString::from(certs.key_pem.clone()));
    assert!(http.tls_config().unwrap_err().starts_with("http.tls_cert"));
    // A key that belongs to another certificate.
    http.tls_cert = Some(certs.cert_pem.clone());
    http.tls_key = Some(SecretString::from(
        vigil_testkit::certs::server_certs().key_pem,
    ));
    let err = http.tls_config().unwrap_err();
    assert!(err.starts_with("http.tls_key"), "{err}");
    // And nothing secret in the message.
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}
