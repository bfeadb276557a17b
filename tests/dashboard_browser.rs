//! The dashboard in a real browser (headless Chromium through chromedriver) against a real
//! `vigil run`: sign in, watch a queue count change after an enqueue through the API, retry a
//! dead job from the page and watch it finish, acknowledge an alert from the page, and check
//! an analyst sees no admin buttons; sign in with Okta (the test kit's OIDC provider).
//! Screenshots go to `artifacts/screenshots/` (README shows one of them).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Deployment, PASSWORD, get_json, post_json, wait_status};
use vigil_testkit::oidc::OidcProvider;
use vigil_testkit::smtp::{SmtpServer, Stage};
use vigil_testkit::webdriver::{Driver, Session, chromium_available};

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sign_in(browser: &Session, base: &str, user: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.type_into("#username", user).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#sign-in-button").await;
    browser
        .wait_text("#queues-body", Duration::from_secs(20), |t| {
            t.contains("email")
        })
        .await;
}

async fn enqueue_email(base: &str, token: &str, body: Value) -> String {
    let (status, job) = post_json(base, token, "/api/v1/jobs/email", &body).await;
    assert_eq!(status, 202);
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_watches_counts_and_retries_a_dead_job_from_the_dashboard() {
    assert!(
        chromium_available(),
        "browser tests need chromium and chromium-driver (scripts/test.sh installs them)"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The SMTP server refuses the first message for good (554): it goes dead. (A server that
    // is down would not do: emails wait out an outage without burning attempts.)
    let smtp = SmtpServer::start().await;
    smtp.inject(Stage::Data, "554 5.7.1 message refused", Some(1));
    let vigil = Deployment::new(
        smtp.port(),
        // The test polls the API beside the page; rate limits have their own tests.
        &[
            ("VIGIL_QUEUES__EMAIL__MAX_ATTEMPTS", "1"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    vigil.add_user("admin", "admin");
    vigil.add_user("ann", "analyst");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;

    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    sign_in(&browser, &base, "admin").await;

    // A delayed job shows up in the email queue's `scheduled` count without a reload.
    let scheduled = "tr[data-queue=email] td[data-count=scheduled]";
    let before: u64 = browser
        .text(scheduled)
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    enqueue_email(
        &base,
        &token,
        json!({"payload": {"to": ["later@example.com"], "subject": "later", "body": {"text": "x"}},
               "delay_seconds": 3600}),
    )
    .await;
    let after = browser
        .wait_text(scheduled, Duration::from_secs(20), |t| {
            t.trim().parse::<u64>().is_ok_and(|n| n == before + 1)
        })
        .await;
    assert_eq!(after.trim(), (before + 1).to_string());

    // An email while SMTP is down goes dead; the page offers Retry.
    let id = enqueue_email(
        &base,
        &token,
        json!({"payload": {"to": ["soc@example.com"], "subject": "retry me", "body": {"text": "x"}}}),
    )
    .await;
    let dead = wait_status(&base, &token, &id, "dead").await;
    assert_eq!(dead["status"], "dead", "{dead}");
    let row = format!("tr[data-job='{id}']");
    browser
        .wait_text(&row, Duration::from_secs(20), |t| t.contains("dead"))
        .await;
    std::fs::write(
        artifacts().join("dashboard.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // The server takes messages again; Retry from the page; the job finishes and the page
    // shows it.
    browser
        .click(&format!("{row} button[aria-label^=retry]"))
        .await;
    let done = wait_status(&base, &token, &id, "done").await;
    assert_eq!(done["status"], "done", "{done}");
    browser
        .wait_text(&row, Duration::from_secs(20), |t| t.contains("done"))
        .await;
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    std::fs::write(
        artifacts().join("dashboard-retried.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // A critical security event opens an alert; the admin acknowledges it from the page.
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/events/security"))
        .bearer_auth(&token)
        .json(
            &json!({"source": "edr", "event_type": "malware.detected", "severity": 4,
                      "description": "beacon on laptop-42"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let alert_id = res.json::<Value>().await.unwrap()["alert_id"]
        .as_i64()
        .unwrap();
    let alert_row = format!("tr[data-alert='{alert_id}']");
    browser
        .wait_text(&alert_row, Duration::from_secs(20), |t| t.contains("open"))
        .await;
    browser
        .click(&format!(
            "{alert_row} button[aria-label='acknowledge alert {alert_id}']"
        ))
        .await;
    browser
        .wait_text(&alert_row, Duration::from_secs(20), |t| {
            t.contains("acknowledged")
        })
        .await;
    let alert = get_json(&base, &token, &format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(alert["status"], "acknowledged", "{alert}");
    assert_eq!(alert["acknowledged_by"], "user:admin");
    assert_eq!(alert["transitions"][0]["action"], "acknowledge");
    browser
        .execute(
            &format!("document.querySelector(\"{alert_row}\").scrollIntoView({{block: 'center'}}); return 0;"),
            vec![],
        )
        .await;
    std::fs::write(
        artifacts().join("dashboard-alert-acknowledged.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.close().await;

    // An analyst on a phone-sized screen sees the same data and no admin buttons.
    let phone = driver.session(390, 844).await;
    sign_in(&phone, &base, "ann").await;
    phone
        .wait_text(&row, Duration::from_secs(20), |t| t.contains("done"))
        .await;
    let admin_buttons = phone
        .execute(
            "return [...document.querySelectorAll('button')].filter(b => b.offsetParent !== null \
             && /^(Retry|Cancel|Pause|Resume|Acknowledge|Resolve)$/.test(b.textContent)).length;",
            vec![],
        )
        .await;
    assert_eq!(admin_buttons, json!(0));
    std::fs::write(
        artifacts().join("dashboard-analyst-phone.png"),
        phone.screenshot().await,
    )
    .unwrap();
    phone.close().await;

    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// The rate limit is per user, shared by every tab: when the dashboard hits it, it says so
/// and waits for `Retry-After` instead of failing every panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_backs_off_when_rate_limited() {
    assert!(
        chromium_available(),
        "browser tests need chromium and chromium-driver"
    );
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(
        smtp.port(),
        &[("VIGIL_RATE_LIMIT__AUTHENTICATED_PER_MINUTE", "8")],
    );
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("api").await;
    let base = vigil.base();
    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    // Sign-in plus the first refresh's six calls fit; the next refresh runs out.
    sign_in(&browser, &base, "admin").await;
    let live = browser
        .wait_text("#live", Duration::from_secs(30), |t| {
            t.contains("rate limited")
        })
        .await;
    assert!(live.contains("updates resume in"), "{live}");
    std::fs::write(
        artifacts().join("dashboard-rate-limited.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// "Sign in with Okta" end to end: the page offers it, the browser goes to the identity
/// provider (the test kit's, which signs in an analyst), comes back through vigil's callback
/// and lands in the dashboard with the mapped role and no admin buttons; after signing out,
/// a local password still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_okta_and_gets_the_role_of_their_groups() {
    assert!(
        chromium_available(),
        "browser tests need chromium and chromium-driver"
    );
    let smtp = SmtpServer::start().await;
    let mut vigil = Deployment::new(smtp.port(), &[("VIGIL_RATE_LIMIT__ENABLED", "false")]);
    vigil.choose_port_now();
    let base = vigil.base();
    let callback = format!("{base}/api/v1/auth/oidc/callback");
    let idp = OidcProvider::start("0oavigilweb", "web-client-secret-0123456789", &callback).await;
    idp.sign_in_as(
        "00u5dana",
        "dana@example.com",
        &["Everyone", "vigil-analysts"],
    );
    for (key, value) in [
        ("VIGIL_AUTH__OIDC__ISSUER", idp.issuer()),
        ("VIGIL_AUTH__OIDC__AUDIENCE", "api://vigil".to_owned()),
        ("VIGIL_AUTH__OIDC__JWKS_URL", idp.jwks_url()),
        ("VIGIL_AUTH__OIDC__USERNAME_CLAIM", "email".to_owned()),
        ("VIGIL_AUTH__OIDC__CLIENT_ID", "0oavigilweb".to_owned()),
        (
            "VIGIL_AUTH__OIDC__CLIENT_SECRET",
            "web-client-secret-0123456789".to_owned(),
        ),
        ("VIGIL_AUTH__OIDC__REDIRECT_URL", callback.clone()),
    ] {
        vigil.set(key, &value);
    }
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("api").await;

    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_text("#sso:not([hidden])", Duration::from_secs(20), |t| {
            t.contains("Sign in with Okta")
        })
        .await;
    browser.click("#sso-link").await;
    let who = browser
        .wait_text("#who-name", Duration::from_secs(30), |t| {
            t.contains("dana@example.com")
        })
        .await;
    assert_eq!(who, "dana@example.com (analyst)");
    browser
        .wait_text("#queues-body", Duration::from_secs(20), |t| {
            t.contains("email")
        })
        .await;
    // The one-time code is gone from the address bar, and the page shows no admin buttons.
    let url = browser.execute("return location.href;", vec![]).await;
    assert!(!url.as_str().unwrap().contains("sso="), "{url}");
    let admin = browser
        .execute("return document.body.classList.contains('admin');", vec![])
        .await;
    assert_eq!(admin, json!(false));
    assert_eq!(idp.id_tokens_issued(), 1);
    std::fs::write(
        artifacts().join("dashboard-sso-analyst.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // The session is dana's vigil session with the analyst role: admin routes refuse it.
    let access = browser
        .execute("return sessionStorage.getItem('vigil.access');", vec![])
        .await;
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/queues/email/pause"))
        .bearer_auth(access.as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Sign out; a local password still signs in.
    browser.click("#sign-out").await;
    sign_in(&browser, &base, "admin").await;
    let who = browser.text("#who-name").await.unwrap();
    assert_eq!(who, "admin (admin)");
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}
