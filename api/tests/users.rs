//! `/api/v1/users`: an admin lists users, disables and re-enables one, changes a role and sets
//! a new password; each takes effect at the next request and is audited; analysts and
//! anonymous callers are refused; an admin cannot lock themselves out.

mod common;

use common::TestApp;
use poem::http::Method;
use serde_json::json;
use vigil_store::users::UserRole;

#[tokio::test]
async fn an_admin_manages_users_and_every_change_is_audited() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let bob = app.login("bob", UserRole::Analyst).await;

    let list = app.get("/api/v1/users", Some(&admin)).await;
    list.expect(200);
    let names: Vec<&str> = list.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"admin") && names.contains(&"bob"),
        "{names:?}"
    );
    assert!(
        !list.text.contains("argon2"),
        "no password hash is ever listed"
    );

    let patch = |body| app.call(Method::PATCH, "/api/v1/users/bob", Some(&admin), Some(body));
    // Disabled: bob's token stops working at once.
    let a = patch(json!({"disabled": true})).await;
    a.expect(200);
    assert_eq!(a.body["disabled"], true);
    app.get("/api/v1/queues", Some(&bob)).await.expect(401);
    // Enabled again, promoted, new password: he signs in with it and may act as admin.
    patch(json!({"disabled": false, "role": "admin", "password": "a brand new secret"}))
        .await
        .expect(200);
    let signed = app
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "bob", "password": "a brand new secret"}),
        )
        .await;
    signed.expect(200);
    let token = signed.body["access_token"].as_str().unwrap().to_owned();
    app.call(
        Method::POST,
        "/api/v1/queues/email/pause",
        Some(&token),
        None,
    )
    .await
    .expect(200);

    let actions: Vec<String> = app
        .audited()
        .await
        .iter()
        .filter(|r| r["target_id"] == "bob")
        .map(|r| r["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for want in [
        "user.disable",
        "user.enable",
        "user.set_role",
        "user.set_password",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn bad_changes_are_refused_with_a_reason() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    app.call(
        Method::PATCH,
        "/api/v1/users/analyst",
        Some(&analyst),
        Some(json!({"disabled": true})),
    )
    .await
    .expect(403);
    app.get("/api/v1/users", Some(&analyst)).await.expect(403);
    app.get("/api/v1/users", None).await.expect(401);
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/nobody",
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    a.expect(404);
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/analyst",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    a.expect(422);
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/analyst",
            Some(&admin),
            Some(json!({"password": "short"})),
        )
        .await;
    assert!(a.status == 400 || a.status == 422, "{}", a.text);
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/analyst",
            Some(&admin),
            Some(json!({"role": "root"})),
        )
        .await;
    assert!(a.status == 400 || a.status == 422, "{}", a.text);
    // No self-lockout.
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/admin",
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    a.expect(409);
    let a = app
        .call(
            Method::PATCH,
            "/api/v1/users/admin",
            Some(&admin),
            Some(json!({"role": "analyst"})),
        )
        .await;
    a.expect(409);
    app.get("/api/v1/users", Some(&admin)).await.expect(200);
}
