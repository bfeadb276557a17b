//! `vigil user disable|enable|set-password|set-role|revoke-sessions` against a running
//! `vigil api`: each change takes effect at sign-in (revoked sessions at once) and is in the
//! audit trail.

mod support;

use support::{Deployment, PASSWORD, post_json, text, wait_for_audit};

const NEW_PASSWORD: &str = "a-brand-new-passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_can_be_reenabled_given_a_new_password_and_a_new_role() {
    let vigil = Deployment::new(2525, &[("VIGIL_AUTH__USER_CACHE_SECONDS", "0")]);
    vigil.add_user("admin", "admin");
    vigil.add_user("bob", "analyst");
    let daemon = vigil.start("run").await;

    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
    ok(vigil.user(&["disable", "bob"], ""));
    assert_eq!(vigil.sign_in("bob", PASSWORD).await.0, 401);
    ok(vigil.user(&["enable", "bob"], ""));
    assert_eq!(vigil.sign_in("bob", PASSWORD).await.0, 200);

    let short = vigil.user(&["set-password", "bob"], "short");
    assert_eq!(short.status.code(), Some(1));
    assert!(
        text(&short).contains("at least 12 characters"),
        "{}",
        text(&short)
    );
    ok(vigil.user(&["set-password", "bob"], NEW_PASSWORD));
    assert_eq!(vigil.sign_in("bob", PASSWORD).await.0, 401);
    assert_eq!(vigil.sign_in("bob", NEW_PASSWORD).await.0, 200);

    // An analyst may not enqueue; as an admin bob may.
    for (role, want) in [("analyst", 403), ("admin", 202)] {
        ok(vigil.user(&["set-role", "bob", "--role", role], ""));
        let (_, t) = vigil.sign_in("bob", NEW_PASSWORD).await;
        let token = t["access_token"].as_str().unwrap();
        let body = serde_json::json!({"payload": {}});
        let path = "/api/v1/jobs/alert_escalation";
        assert_eq!(
            post_json(&vigil.base(), token, path, &body).await.0,
            want,
            "{role}"
        );
    }

    // Revoking bob's sessions ends his signed-in tokens (access and refresh) at once.
    let (_, t) = vigil.sign_in("bob", NEW_PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let queues = format!("{}/api/v1/queues", vigil.base());
    let get = |token: &str| {
        reqwest::Client::new()
            .get(&queues)
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get(access).await.unwrap().status().as_u16(), 200);
    let out = vigil.user(&["revoke-sessions", "bob"], "");
    ok(out);
    assert_eq!(get(access).await.unwrap().status().as_u16(), 401);
    let refreshed = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/refresh", vigil.base()))
        .json(&serde_json::json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status().as_u16(), 401);
    assert_eq!(vigil.sign_in("bob", NEW_PASSWORD).await.0, 200);

    let missing = vigil.user(&["enable", "nobody"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).contains("no user named `nobody`"));

    let admin = vigil.token("admin").await;
    wait_for_audit(
        &vigil.base(),
        &admin,
        "",
        &[
            ("user.disable", "bob"),
            ("user.enable", "bob"),
            ("user.set_password", "bob"),
            ("user.set_role", "bob"),
            ("user.revoke_sessions", "bob"),
        ],
    )
    .await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}
