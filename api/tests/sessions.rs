//! Sessions: refresh tokens rotate, a retired token revokes the whole family (and raises an
//! alert), logout, and an admin revoking every session of a user.

mod common;

use common::{PASSWORD, TestApp};
use serde_json::{Value, json};
use vigil_store::users::UserRole;

async fn sign_in(app: &TestApp, name: &str) -> (String, String) {
    let a = app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": name, "password": PASSWORD}),
        )
        .await;
    a.expect(200);
    tokens(&a.body)
}

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> common::Answer {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test]
async fn a_refresh_token_works_once_and_its_reuse_revokes_the_family() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.add_user("alice", UserRole::Analyst).await;
    let (_, stolen) = sign_in(&app, "alice").await;

    // The attacker refreshes first with the stolen token and gets a working pair.
    let a = refresh(&app, &stolen).await;
    a.expect(200);
    let (attacker_access, attacker_refresh) = tokens(&a.body);
    assert_ne!(
        attacker_refresh, stolen,
        "a refresh returns a new refresh token"
    );
    app.get("/api/v1/queues", Some(&attacker_access))
        .await
        .expect(200);

    // Alice's client presents the same (now retired) token: reuse.
    let a = refresh(&app, &stolen).await;
    a.expect(401);
    assert!(a.body["message"].as_str().unwrap().contains("already used"));
    // The whole family is revoked: the attacker's refresh and access tokens stop working.
    refresh(&app, &attacker_refresh).await.expect(401);
    let a = app.get("/api/v1/queues", Some(&attacker_access)).await;
    a.expect(401);
    assert!(a.body["message"].as_str().unwrap().contains("session"));
    // A third try with the stolen token changes nothing.
    refresh(&app, &stolen).await.expect(401);

    // Audited, and reported as a High security event with an alert open.
    let audit = app.audited().await;
    let reuse: Vec<&Value> = audit
        .iter()
        .filter(|p| p["action"] == "auth.refresh_reuse")
        .collect();
    assert_eq!(reuse.len(), 1, "one reuse record: {audit:?}");
    assert_eq!(reuse[0]["target_id"], "alice");
    let alerts = app
        .get("/api/v1/alerts?rule=security_event", Some(&admin))
        .await;
    alerts.expect(200);
    let found: Vec<&Value> = alerts.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["title"]
                .as_str()
                .is_some_and(|t| t.contains("vigil.auth.refresh_token_reuse"))
        })
        .collect();
    assert_eq!(found.len(), 1, "{}", alerts.text);
    assert_eq!(found[0]["severity"], "high");

    // Alice signs in again and her new session works.
    let (access, refresh_token) = sign_in(&app, "alice").await;
    app.get("/api/v1/queues", Some(&access)).await.expect(200);
    refresh(&app, &refresh_token).await.expect(200);
}

#[tokio::test]
async fn logout_ends_the_session_of_the_token() {
    let app = TestApp::new().await;
    app.add_user("bob", UserRole::Analyst).await;
    let (access, refresh_token) = sign_in(&app, "bob").await;
    let (other_access, _) = sign_in(&app, "bob").await;
    app.post("/api/v1/auth/logout", None, json!({}))
        .await
        .expect(401);
    let a = app
        .call(
            poem::http::Method::POST,
            "/api/v1/auth/logout",
            Some(&access),
            None,
        )
        .await;
    a.expect(204);
    app.get("/api/v1/queues", Some(&access)).await.expect(401);
    refresh(&app, &refresh_token).await.expect(401);
    // Another session of the same user is untouched.
    app.get("/api/v1/queues", Some(&other_access))
        .await
        .expect(200);
    let actions: Vec<Value> = app
        .audited()
        .await
        .into_iter()
        .map(|p| p["action"].clone())
        .collect();
    assert!(actions.contains(&json!("auth.logout")), "{actions:?}");
}

#[tokio::test]
async fn an_admin_lists_and_revokes_every_session_of_a_user() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    app.add_user("carol", UserRole::Analyst).await;
    let (a1, r1) = sign_in(&app, "carol").await;
    let (a2, _) = sign_in(&app, "carol").await;

    let listed = app.get("/api/v1/users/carol/sessions", Some(&admin)).await;
    listed.expect(200);
    assert_eq!(
        listed.body["results"].as_array().unwrap().len(),
        2,
        "{}",
        listed.text
    );
    app.get("/api/v1/users/carol/sessions", Some(&analyst))
        .await
        .expect(403);
    async fn del(app: &TestApp, token: &str, user: &str) -> common::Answer {
        let path = format!("/api/v1/users/{user}/sessions");
        app.call(poem::http::Method::DELETE, &path, Some(token), None)
            .await
    }
    del(&app, &analyst, "carol").await.expect(403);
    assert_eq!(
        del(&app, &admin, "nobody").await.expect(404).code(),
        "not_found"
    );
    let done = del(&app, &admin, "carol").await;
    done.expect(200);
    assert_eq!(done.body["revoked"].as_array().unwrap().len(), 2);
    for token in [&a1, &a2] {
        app.get("/api/v1/queues", Some(token)).await.expect(401);
    }
    refresh(&app, &r1).await.expect(401);
    let listed = app.get("/api/v1/users/carol/sessions", Some(&admin)).await;
    assert!(
        listed.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["revoked_reason"] == "revoked_by_admin"),
        "{}",
        listed.text
    );
    // Signing in again works.
    let (a3, _) = sign_in(&app, "carol").await;
    app.get("/api/v1/queues", Some(&a3)).await.expect(200);
    let audit = app.audited().await;
    assert!(
        audit
            .iter()
            .any(|p| p["action"] == "user.revoke_sessions" && p["target_id"] == "carol"),
        "{audit:?}"
    );
}
