//! Sign-in, refresh, disabled users, the JWT attacks of the issue, RS256/ES256 and OIDC.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{PASSWORD, SECRET, TestApp, es256, key, rs256};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::Method;
use secrecy::SecretString;
use serde_json::json;
use vigil_api::auth::jwt::{Claims, TokenKeys, TokenType, now_secs};
use vigil_store::users::{self, UserRole};

fn claims(sub: &str) -> Claims {
    let now = now_secs();
    Claims {
        iss: "vigil".into(),
        aud: "vigil-api".into(),
        sub: sub.into(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: "t".into(),
        token_type: TokenType::Access,
        role: UserRole::Admin,
        sid: None,
    }
}

fn keys(f: impl FnOnce(&mut vigil_api::AuthSettings)) -> TokenKeys {
    let mut s = common::settings().auth;
    f(&mut s);
    TokenKeys::from_settings(&s).unwrap()
}

#[tokio::test]
async fn sign_in_refresh_and_failed_sign_ins() {
    let app = TestApp::new().await;
    app.add_user("alice", UserRole::Analyst).await;
    let a = app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    a.expect(200);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 3600);
    assert_eq!(a.body["refresh_expires_in"], 86400);
    assert_eq!(a.body["role"], "analyst");
    let access = a.body["access_token"].as_str().unwrap().to_owned();
    let refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    app.get("/api/v1/queues", Some(&access)).await.expect(200);

    // A refresh token is never an access token, and vice versa.
    let a = app.get("/api/v1/queues", Some(&refresh)).await;
    a.expect(401);
    assert!(
        a.body["message"].as_str().unwrap().contains("refresh"),
        "{}",
        a.text
    );
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": access}),
    )
    .await
    .expect(401);
    let a = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    a.expect(200);
    app.get(
        "/api/v1/queues",
        Some(a.body["access_token"].as_str().unwrap()),
    )
    .await
    .expect(200);

    // Wrong password, unknown user: the same 401.
    for body in [
        json!({"username": "alice", "password": "nope"}),
        json!({"username": "mallory", "password": PASSWORD}),
    ] {
        let a = app.post("/api/v1/auth/token", None, body).await;
        a.expect(401);
        assert_eq!(a.body["message"], "invalid username or password");
    }
    // Malformed bodies: 400.
    app.post("/api/v1/auth/token", None, json!({"username": "alice"}))
        .await
        .expect(400);
    app.post(
        "/api/v1/auth/token",
        None,
        json!({"username": "alice", "password": "x", "otp": 1}),
    )
    .await
    .expect(400);

    let audit = app.audited().await;
    let actions: Vec<&str> = audit.iter().filter_map(|p| p["action"].as_str()).collect();
    for expected in ["auth.login", "auth.refresh", "auth.login_failed"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
}

#[tokio::test]
async fn disabled_users_lose_access_at_once() {
    let app = TestApp::new().await;
    let token = app.login("bob", UserRole::Admin).await;
    let a = app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    let refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    app.get("/api/v1/queues", Some(&token)).await.expect(200);
    users::disable(&app.db.db, "bob").await.unwrap();
    let a = app.get("/api/v1/queues", Some(&token)).await;
    a.expect(401);
    assert!(a.body["message"].as_str().unwrap().contains("disabled"));
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .expect(401);
    app.post(
        "/api/v1/auth/token",
        None,
        json!({"username": "bob", "password": PASSWORD}),
    )
    .await
    .expect(401);
}

#[tokio::test]
async fn the_role_is_the_users_current_one_not_the_tokens() {
    let app = TestApp::new().await;
    app.add_user("carol", UserRole::Analyst).await;
    // A validly signed token claiming admin for an analyst still cannot mutate.
    let forged = app.state.auth().keys().sign(&claims("carol")).unwrap();
    app.call(
        Method::POST,
        "/api/v1/queues/email/pause",
        Some(&forged),
        None,
    )
    .await
    .expect(403);
}

#[tokio::test]
async fn jwt_attacks_are_rejected() {
    let app = TestApp::new().await;
    app.add_user("admin", UserRole::Admin).await;
    let good = app.state.auth().keys().sign(&claims("admin")).unwrap();
    app.get("/api/v1/queues", Some(&good)).await.expect(200);

    let mut attacks: Vec<(&str, String)> = Vec::new();
    // alg: none, no signature.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"vigil-1"}"#);
    let payload = B64.encode(serde_json::to_vec(&claims("admin")).unwrap());
    attacks.push(("alg none", format!("{header}.{payload}.")));
    // Tampered payload: a valid token with another subject spliced in.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims("admin");
    c.exp += 86_400 * 365;
    let tampered = B64.encode(serde_json::to_vec(&c).unwrap());
    attacks.push((
        "tampered",
        format!("{}.{}.{}", parts[0], tampered, parts[2]),
    ));
    // Expired, not yet valid (beyond the 30 s leeway).
    let mut c = claims("admin");
    c.exp = now_secs() - 120;
    c.iat = c.exp - 600;
    c.nbf = c.iat;
    attacks.push(("expired", app.state.auth().keys().sign(&c).unwrap()));
    let mut c = claims("admin");
    c.nbf = now_secs() + 600;
    c.exp = c.nbf + 600;
    attacks.push(("not yet valid", app.state.auth().keys().sign(&c).unwrap()));
    // Right key, wrong audience or issuer.
    let mut c = claims("admin");
    c.aud = "other-api".into();
    attacks.push(("wrong aud", app.state.auth().keys().sign(&c).unwrap()));
    let mut c = claims("admin");
    c.iss = "evil".into();
    attacks.push(("wrong iss", app.state.auth().keys().sign(&c).unwrap()));
    // Unknown kid, and a different secret.
    attacks.push((
        "unknown kid",
        keys(|s| s.key_id = "other".into())
            .sign(&claims("admin"))
            .unwrap(),
    ));
    attacks.push((
        "other secret",
        keys(|s| s.jwt_secret = Some(SecretString::from("x".repeat(40))))
            .sign(&claims("admin"))
            .unwrap(),
    ));

    for (name, token) in attacks {
        let a = app.get("/api/v1/queues", Some(&token)).await;
        assert_eq!(a.status.as_u16(), 401, "{name}: {}", a.text);
        assert_eq!(a.code(), "unauthorized", "{name}");
    }
}

#[tokio::test]
async fn rs256_pins_its_algorithm_against_key_confusion() {
    let app = TestApp::with(rs256).await;
    let token = app.login("admin", UserRole::Admin).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    app.get("/api/v1/queues", Some(&token)).await.expect(200);
    // HS256 "signed" with the RS256 public key (the classic confusion attack).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("vigil-1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims("admin"),
        &EncodingKey::from_secret(key("rsa_public.pem").as_bytes()),
    )
    .unwrap();
    let a = app.get("/api/v1/queues", Some(&forged)).await;
    a.expect(401);
    assert!(
        a.body["message"].as_str().unwrap().contains("algorithm"),
        "{}",
        a.text
    );
    // An HS256 token with the old shared secret is not accepted either.
    let hs = keys(|_| {}).sign(&claims("admin")).unwrap();
    app.get("/api/v1/queues", Some(&hs)).await.expect(401);
}

#[tokio::test]
async fn es256_tokens_work() {
    let app = TestApp::with(es256).await;
    let token = app.login("admin", UserRole::Admin).await;
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        Algorithm::ES256
    );
    app.get("/api/v1/schedules", Some(&token)).await.expect(200);
}

#[tokio::test]
async fn bad_key_settings_are_refused_at_start() {
    let mut s = common::settings().auth;
    s.jwt_secret = Some(SecretString::from("short"));
    assert!(
        TokenKeys::from_settings(&s)
            .unwrap_err()
            .to_string()
            .contains("32 bytes")
    );
    s.jwt_secret = None;
    assert!(TokenKeys::from_settings(&s).is_err());
    s.algorithm = vigil_api::JwtAlgorithm::RS256;
    s.private_key = Some(SecretString::from("not a pem"));
    s.public_key = Some("nope".into());
    let err = TokenKeys::from_settings(&s).unwrap_err().to_string();
    assert!(
        !err.contains("not a pem"),
        "the key never appears in errors: {err}"
    );
    let _ = SECRET;
}

/// A tiny JWKS server (the external issuer) on a free port.
async fn jwks_server(jwks: serde_json::Value) -> (String, tokio::task::JoinHandle<()>) {
    use poem::{
        EndpointExt, Route, Server, get, handler,
        listener::{Acceptor, Listener, TcpListener},
        web::{Data, Json},
    };
    #[handler]
    fn keys(Data(jwks): Data<&serde_json::Value>) -> Json<serde_json::Value> {
        Json(jwks.clone())
    }
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let app = Route::new().at("/keys", get(keys)).data(jwks);
    let task = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}/keys"), task)
}

#[tokio::test]
async fn oidc_tokens_are_verified_against_the_jwks_and_mapped_to_roles() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = EncodingKey::from_rsa_pem(key("rsa_private.pem").as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signer, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("okta-key-1".into());
    let (url, server) = jwks_server(json!({"keys": [jwk]})).await;
    let app = TestApp::with(|s| {
        s.auth.oidc = Some(vigil_api::OidcSettings {
            issuer: "https://example.okta.com/oauth2/default".into(),
            audience: "api://vigil".into(),
            jwks_url: url,
            username_claim: "email".into(),
            ..Default::default()
        })
    })
    .await;
    let sign = |kid: &str, groups: serde_json::Value, iss: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        let now = now_secs();
        jsonwebtoken::encode(
            &h,
            &json!({"iss": iss, "aud": "api://vigil", "sub": "00u1", "email": "dana@example.com",
            "groups": groups, "iat": now, "exp": now + 600}),
            &signer,
        )
        .unwrap()
    };
    let issuer = "https://example.okta.com/oauth2/default";
    let admin = sign("okta-key-1", json!(["Everyone", "vigil-admins"]), issuer);
    app.call(
        Method::POST,
        "/api/v1/queues/audit/pause",
        Some(&admin),
        None,
    )
    .await
    .expect(200);
    let analyst = sign("okta-key-1", json!(["vigil-analysts"]), issuer);
    app.get("/api/v1/queues", Some(&analyst)).await.expect(200);
    app.call(
        Method::POST,
        "/api/v1/queues/audit/resume",
        Some(&analyst),
        None,
    )
    .await
    .expect(403);
    // No vigil group, unknown kid, wrong issuer: 401.
    app.get(
        "/api/v1/queues",
        Some(&sign("okta-key-1", json!(["Everyone"]), issuer)),
    )
    .await
    .expect(401);
    app.get(
        "/api/v1/queues",
        Some(&sign("rotated-away", json!(["vigil-admins"]), issuer)),
    )
    .await
    .expect(401);
    app.get(
        "/api/v1/queues",
        Some(&sign(
            "okta-key-1",
            json!(["vigil-admins"]),
            "https://evil.example",
        )),
    )
    .await
    .expect(401);
    assert!(
        app.audited()
            .await
            .iter()
            .any(|p| p["action"] == "queue.pause" && p["actor"]["id"] == "oidc:dana@example.com")
    );
    server.abort();
}
