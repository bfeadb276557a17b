//! Dashboard single sign-on (OIDC authorization code + PKCE) against the test kit's local
//! provider: the mapped role, a real vigil session, and every refusal (state, nonce, replayed
//! code, PKCE, groups without a role, a local user of the same name).

mod common;

use common::{Answer, PASSWORD, TestApp};
use poem::http::Method;
use secrecy::SecretString;
use serde_json::json;
use vigil_store::users::{self, UserRole};
use vigil_testkit::oidc::OidcProvider;

const CLIENT_ID: &str = "0oavigilweb";
const CLIENT_SECRET: &str = "web-client-secret-0123456789";
const REDIRECT: &str = "https://vigil.example/api/v1/auth/oidc/callback";

struct Sso {
    app: TestApp,
    idp: OidcProvider,
    http: reqwest::Client,
}

/// A sign-in started at vigil: its state cookie and the authorization URL.
struct Started {
    cookie: String,
    url: String,
}

impl Sso {
    async fn new() -> Sso {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let idp = OidcProvider::start(CLIENT_ID, CLIENT_SECRET, REDIRECT).await;
        let (issuer, jwks_url) = (idp.issuer(), idp.jwks_url());
        let app = TestApp::with(|s| {
            s.auth.oidc = Some(vigil_api::OidcSettings {
                issuer,
                audience: "api://vigil".into(),
                jwks_url,
                username_claim: "email".into(),
                client_id: CLIENT_ID.into(),
                client_secret: Some(SecretString::from(CLIENT_SECRET)),
                redirect_url: REDIRECT.into(),
                ..Default::default()
            })
        })
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Sso { app, idp, http }
    }

    /// `GET /api/v1/auth/oidc/login`.
    async fn begin(&self) -> Started {
        let a = self.app.get("/api/v1/auth/oidc/login", None).await;
        a.expect(302);
        let cookie = a.header("set-cookie").expect("a state cookie").to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert!(
            cookie.contains("Secure"),
            "an https redirect URL makes it Secure: {cookie}"
        );
        let value = cookie
            .split(';')
            .next()
            .and_then(|c| c.strip_prefix("vigil_oidc_state="))
            .unwrap()
            .to_owned();
        Started {
            cookie: value,
            url: a.header("location").unwrap().to_owned(),
        }
    }

    /// The provider's answer to an authorization URL: `(code, state)` for the callback.
    async fn authorize(&self, started: &Started) -> (String, String) {
        let url = reqwest::Url::parse(&started.url).unwrap();
        let q = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
        assert!(q("nonce").is_some_and(|n| n.len() >= 43));
        assert_eq!(q("state").as_deref(), Some(started.cookie.as_str()));
        let resp = self.http.get(url.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let back = reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert!(back.as_str().starts_with(REDIRECT));
        let get = |k: &str| {
            back.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        (get("code"), get("state"))
    }

    /// `GET /api/v1/auth/oidc/callback` with `cookie` as the state cookie.
    async fn callback(&self, code: &str, state: &str, cookie: Option<&str>) -> Answer {
        let mut req = self
            .app
            .client
            .get("/api/v1/auth/oidc/callback")
            .query("code", &code)
            .query("state", &state);
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("theme=dark; vigil_oidc_state={c}"));
        }
        TestApp::answer(req.send().await).await
    }

    /// The whole flow for the provider's current user; returns the callback's answer.
    async fn sign_in(&self) -> Answer {
        let started = self.begin().await;
        let (code, state) = self.authorize(&started).await;
        self.callback(&code, &state, Some(&started.cookie)).await
    }

    /// Trades the one-time code of a callback's redirect for the tokens.
    async fn exchange(&self, callback: &Answer) -> Answer {
        callback.expect(303);
        let location = callback.header("location").unwrap();
        let code = location.strip_prefix("/dashboard/#sso=").expect(location);
        self.app
            .post("/api/v1/auth/oidc/exchange", None, json!({"code": code}))
            .await
    }

    async fn failures(&self) -> Vec<serde_json::Value> {
        self.app
            .audited()
            .await
            .into_iter()
            .filter(|p| p["action"] == "auth.login_failed")
            .collect()
    }
}

#[tokio::test]
async fn sso_maps_groups_to_a_role_in_a_real_vigil_session() {
    let sso = Sso::new().await;
    let info = sso.app.get("/api/v1/auth/oidc", None).await;
    info.expect(200);
    assert_eq!(info.body["enabled"], true);

    // alice is in vigil-admins: an admin session.
    let callback = sso.sign_in().await;
    assert!(
        callback.header("set-cookie").unwrap().contains("Max-Age=0"),
        "the state cookie is cleared"
    );
    let tokens = sso.exchange(&callback).await;
    tokens.expect(200);
    assert_eq!(tokens.body["username"], "alice@example.com");
    assert_eq!(tokens.body["role"], "admin");
    let access = tokens.body["access_token"].as_str().unwrap().to_owned();
    sso.app
        .call(
            Method::POST,
            "/api/v1/queues/audit/pause",
            Some(&access),
            None,
        )
        .await
        .expect(200);
    // The one-time code is spent.
    sso.exchange(&callback).await.expect(401);

    // It is an ordinary vigil session: refresh rotates, logout ends it.
    let refreshed = sso
        .app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.body["refresh_token"]}),
        )
        .await;
    refreshed.expect(200);
    let access2 = refreshed.body["access_token"].as_str().unwrap().to_owned();
    sso.app
        .call(Method::POST, "/api/v1/auth/logout", Some(&access2), None)
        .await
        .expect(204);
    sso.app
        .get("/api/v1/queues", Some(&access2))
        .await
        .expect(401);

    // The user exists in vigil without a usable password.
    let alice = users::find(&sso.app.db.db, "alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.role, UserRole::Admin);
    sso.app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "alice@example.com", "password": "!sso"}),
        )
        .await
        .expect(401);

    // bob is in vigil-analysts: reads, but admin routes are refused.
    sso.idp
        .sign_in_as("00u2bob", "bob@example.com", &["vigil-analysts"]);
    let bob = sso.exchange(&sso.sign_in().await).await;
    bob.expect(200);
    assert_eq!(bob.body["role"], "analyst");
    let bob_access = bob.body["access_token"].as_str().unwrap();
    sso.app
        .get("/api/v1/queues", Some(bob_access))
        .await
        .expect(200);
    sso.app
        .call(
            Method::POST,
            "/api/v1/queues/audit/resume",
            Some(bob_access),
            None,
        )
        .await
        .expect(403);

    // alice leaves vigil-admins at Okta: her next sign-in makes her an analyst.
    sso.idp
        .sign_in_as("00u1alice", "alice@example.com", &["vigil-analysts"]);
    let again = sso.exchange(&sso.sign_in().await).await;
    assert_eq!(again.body["role"], "analyst");
    let demoted = again.body["access_token"].as_str().unwrap();
    sso.app
        .call(
            Method::POST,
            "/api/v1/queues/audit/resume",
            Some(demoted),
            None,
        )
        .await
        .expect(403);

    let audited = sso.app.audited().await;
    let logins: Vec<_> = audited
        .iter()
        .filter(|p| p["action"] == "auth.login" && p["details"]["method"] == "oidc")
        .collect();
    assert_eq!(logins.len(), 3, "{audited:?}");
}

#[tokio::test]
async fn sso_refuses_a_state_not_started_in_this_browser() {
    let sso = Sso::new().await;
    let mine = sso.begin().await;
    let (code, state) = sso.authorize(&mine).await;
    let other = sso.begin().await;

    // No cookie (a link planted by someone else) or another sign-in's cookie: 401.
    let a = sso.callback(&code, &state, None).await;
    a.expect(401);
    assert!(
        a.body["message"].as_str().unwrap().contains("state"),
        "{}",
        a.text
    );
    sso.callback(&code, &state, Some(&other.cookie))
        .await
        .expect(401);
    // A state vigil never issued, with a matching cookie: 401.
    sso.callback(&code, "forged-state", Some("forged-state"))
        .await
        .expect(401);
    assert_eq!(
        sso.app
            .audited()
            .await
            .iter()
            .filter(|p| p["action"] == "auth.login")
            .count(),
        0
    );
    let failures = sso.failures().await;
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures.iter().all(|f| f["details"]["method"] == "oidc"));
    let mut reasons: Vec<_> = failures
        .iter()
        .map(|f| f["details"]["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["state mismatch", "state mismatch", "unknown state"]
    );

    // The provider says no (the user cancelled): 401 naming its error code.
    let a = TestApp::answer(
        sso.app
            .client
            .get("/api/v1/auth/oidc/callback")
            .query("error", &"access_denied")
            .query("state", &state)
            .send()
            .await,
    )
    .await;
    a.expect(401);
    assert!(a.text.contains("access_denied"), "{}", a.text);

    // The right browser still finishes its sign-in.
    sso.callback(&code, &state, Some(&mine.cookie))
        .await
        .expect(303);
}

#[tokio::test]
async fn sso_refuses_a_replayed_callback_and_a_replayed_code() {
    let sso = Sso::new().await;
    let started = sso.begin().await;
    let (code, state) = sso.authorize(&started).await;
    sso.callback(&code, &state, Some(&started.cookie))
        .await
        .expect(303);
    // The same callback again: the state is spent.
    let a = sso.callback(&code, &state, Some(&started.cookie)).await;
    a.expect(401);
    assert!(a.text.contains("already used"), "{}", a.text);
    // The same code with a fresh sign-in: the provider refuses it, so does vigil.
    let fresh = sso.begin().await;
    let a = sso
        .callback(&code, &fresh.cookie, Some(&fresh.cookie))
        .await;
    a.expect(401);
    assert!(a.text.contains("invalid_grant"), "{}", a.text);
    assert!(
        sso.idp
            .refusals()
            .iter()
            .any(|r| r.contains("code already redeemed")),
        "{:?}",
        sso.idp.refusals()
    );
    assert_eq!(sso.idp.id_tokens_issued(), 1);
}

#[tokio::test]
async fn sso_refuses_a_code_issued_to_another_sign_in_pkce() {
    let sso = Sso::new().await;
    // A code obtained for sign-in A, injected into sign-in B: B's verifier does not match.
    let a = sso.begin().await;
    let (code_a, _) = sso.authorize(&a).await;
    let b = sso.begin().await;
    let answer = sso.callback(&code_a, &b.cookie, Some(&b.cookie)).await;
    answer.expect(401);
    assert!(answer.text.contains("invalid_grant"), "{}", answer.text);
    assert!(
        sso.idp
            .refusals()
            .iter()
            .any(|r| r.contains("PKCE verification failed")),
        "{:?}",
        sso.idp.refusals()
    );
    assert_eq!(sso.failures().await[0]["details"]["reason"], "code refused");
}

#[tokio::test]
async fn sso_refuses_an_id_token_with_another_nonce() {
    let sso = Sso::new().await;
    sso.idp.forge_nonce(Some("nonce-of-an-older-sign-in"));
    let a = sso.sign_in().await;
    a.expect(401);
    assert_eq!(a.code(), "unauthorized");
    assert!(a.text.contains("nonce"), "{}", a.text);
    assert!(
        users::find(&sso.app.db.db, "alice@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        sso.failures().await[0]["details"]["reason"],
        "invalid ID token"
    );
}

#[tokio::test]
async fn sso_refuses_groups_that_grant_no_role() {
    let sso = Sso::new().await;
    sso.idp
        .sign_in_as("00u3carol", "carol@example.com", &["Everyone", "finance"]);
    let a = sso.sign_in().await;
    a.expect(403);
    assert_eq!(a.code(), "forbidden");
    assert!(a.text.contains("no vigil role"), "{}", a.text);
    assert!(
        users::find(&sso.app.db.db, "carol@example.com")
            .await
            .unwrap()
            .is_none()
    );
    let failures = sso.failures().await;
    assert_eq!(failures[0]["details"]["reason"], "no role");
    assert_eq!(failures[0]["actor"]["id"], "oidc:unidentified");
}

#[tokio::test]
async fn sso_does_not_take_over_a_local_user() {
    let sso = Sso::new().await;
    sso.app
        .add_user("alice@example.com", UserRole::Analyst)
        .await;
    let a = sso.sign_in().await;
    a.expect(409);
    assert!(a.text.contains("local vigil user"), "{}", a.text);
    // The local user keeps their role and password.
    let local = users::find(&sso.app.db.db, "alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local.role, UserRole::Analyst);
    sso.app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "alice@example.com", "password": PASSWORD}),
        )
        .await
        .expect(200);
}

#[tokio::test]
async fn sso_routes_answer_404_when_not_configured() {
    let app = TestApp::new().await;
    let info = app.get("/api/v1/auth/oidc", None).await;
    info.expect(200);
    assert_eq!(info.body["enabled"], false);
    let a = app.get("/api/v1/auth/oidc/login", None).await;
    a.expect(404);
    assert!(a.text.contains("auth.oidc.client_id"), "{}", a.text);
}
