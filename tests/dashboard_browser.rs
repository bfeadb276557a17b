//! The dashboard in a real browser (headless Chromium through chromedriver) against a real
//! `vigil run`: sign in, watch a queue count change after an enqueue through the API, retry a
//! dead job from the page and watch it finish, acknowledge an alert from the page, and check
//! an analyst sees no admin buttons; two tabs following the live stream without polling;
//! sign in with Okta (the test kit's OIDC provider).
//! Screenshots go to `artifacts/screenshots/`, and those README shows to `docs/`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Daemon, Deployment, PASSWORD, get_json, post_json, wait_status};
use vigil_testkit::oidc::OidcProvider;
use vigil_testkit::smtp::{SmtpServer, Stage};
use vigil_testkit::webdriver::{Driver, Session, chromium_available};

fn require_chromium() {
    assert!(
        chromium_available(),
        "browser tests need chromium and chromium-driver (scripts/test.sh installs them)"
    );
}

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
}

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

/// `vigil run` sending mail to `smtp_port`, with `env` set and one admin (`admin`): the
/// deployment, its daemon, its base URL and the admin's token.
async fn run_with_admin(
    smtp_port: u16,
    env: &[(&str, &str)],
) -> (Deployment, Daemon, String, String) {
    let vigil = Deployment::new(smtp_port, env);
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    (vigil, daemon, base, token)
}

/// Chooses `value` in the select `id` as a user would (the page hears `change`), once the
/// page offers it; waits for that up to 20 s.
async fn choose(browser: &Session, id: &str, value: &str) {
    let script = format!(
        "const s = document.getElementById('{id}'); \
         if (![...s.options].some((o) => o.value === '{value}')) return false; \
         s.value = '{value}'; s.dispatchEvent(new Event('change')); return true;"
    );
    wait_js(browser, &script, |v| v == &json!(true)).await;
}

async fn enqueue_email(base: &str, token: &str, body: Value) -> String {
    let (status, job) = post_json(base, token, "/api/v1/jobs/email", &body).await;
    assert_eq!(status, 202);
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_watches_counts_and_retries_a_dead_job_from_the_dashboard() {
    require_chromium();
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

/// The read budget is per user, shared by every tab: when the dashboard runs out of it, it
/// says so and waits for `Retry-After` instead of failing every panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_backs_off_when_rate_limited() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(smtp.port(), &[("VIGIL_RATE_LIMIT__READ_PER_MINUTE", "3")]);
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("api").await;
    let base = vigil.base();
    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    // The first job list, audit page and the stream fit; the job list's reload on the
    // stream's first `jobs` signal runs out.
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

/// The counts of `vigil_http_requests_total` whose labels contain `needle`.
async fn requests_counted(base: &str, needle: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("vigil_http_requests_total{") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Two tabs of the same user follow the live stream: an enqueue shows in both without a
/// reload, the page never polls the queue list, and nothing is refused with 429 although the
/// user's write budget is far smaller than the old polling used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_follow_the_live_stream_without_polling_or_429() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let (vigil, daemon, base, token) = run_with_admin(
        smtp.port(),
        &[
            ("VIGIL_RATE_LIMIT__AUTHENTICATED_PER_MINUTE", "5"),
            ("VIGIL_RATE_LIMIT__READ_PER_MINUTE", "60"),
        ],
    )
    .await;
    let driver = Driver::start().await;
    let tabs = [
        driver.session(1280, 900).await,
        driver.session(1280, 900).await,
    ];
    for tab in &tabs {
        sign_in(tab, &base, "admin").await;
    }
    let scheduled = "tr[data-queue=email] td[data-count=scheduled]";
    for n in 1..=3u64 {
        let id = enqueue_email(
            &base,
            &token,
            json!({"payload": {"to": ["later@example.com"], "subject": "later", "body": {"text": "x"}},
                   "delay_seconds": 3600}),
        )
        .await;
        for tab in &tabs {
            tab.wait_text(scheduled, Duration::from_secs(30), |t| {
                t.trim() == n.to_string()
            })
            .await;
            // The job list follows the stream's change signal.
            tab.wait_text(
                &format!("tr[data-job='{id}']"),
                Duration::from_secs(30),
                |t| t.contains("scheduled"),
            )
            .await;
        }
    }
    for tab in &tabs {
        let live = tab.text("#live").await.unwrap();
        assert!(live.starts_with("live"), "{live}");
    }
    std::fs::write(
        docs().join("dashboard-live.png"),
        tabs[0].screenshot().await,
    )
    .unwrap();
    assert_eq!(requests_counted(&base, "status=\"429\"").await, 0);
    assert_eq!(
        requests_counted(&base, "route=\"/api/v1/queues\"").await,
        0,
        "the page polled the queue list"
    );
    assert!(requests_counted(&base, "route=\"/api/v1/stream\"").await >= 2);
    for tab in tabs {
        tab.close().await;
    }
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// The email queue's count of `status`, from the API.
async fn email_count(base: &str, token: &str, status: &str) -> u64 {
    let queues = get_json(base, token, "/api/v1/queues").await;
    queues["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "email")
        .and_then(|q| q["counts"][status].as_u64())
        .unwrap_or(0)
}

async fn wait_email_count(base: &str, token: &str, status: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let n = email_count(base, token, status).await;
        if n == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "email {status}: {n}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An operator finds a job by text in its payload, then retries the 50 dead email jobs by
/// filter after a confirmation naming the count; the address reflects the filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_searches_by_payload_and_bulk_retries_50_dead_jobs_by_filter() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    smtp.inject(Stage::Data, "554 5.7.1 message refused", Some(50));
    let (vigil, daemon, base, token) = run_with_admin(
        smtp.port(),
        &[
            ("VIGIL_QUEUES__EMAIL__MAX_ATTEMPTS", "1"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    )
    .await;
    let needle = enqueue_email(
        &base,
        &token,
        json!({"payload": {"to": ["needle@example.com"], "subject": "later", "body": {"text": "x"}},
               "delay_seconds": 3600}),
    )
    .await;
    for i in 0..50 {
        enqueue_email(
            &base,
            &token,
            json!({"payload": {"to": [format!("user{i}@example.com")], "subject": "s", "body": {"text": "x"}}}),
        )
        .await;
    }
    wait_email_count(&base, &token, "dead", 50).await;

    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    sign_in(&browser, &base, "admin").await;
    // Search by payload text: only the one job to needle@ is listed.
    browser.type_into("#filter-q", "needle@example").await;
    let listed = browser
        .wait_text("#jobs-page", Duration::from_secs(20), |t| {
            t.contains("(1 jobs)")
        })
        .await;
    assert!(listed.contains("page 1 of 1"), "{listed}");
    let rows = browser.text("#jobs-body").await.unwrap();
    assert!(rows.contains(&needle), "{rows}");
    let search = browser.execute("return location.search;", vec![]).await;
    assert_eq!(search, json!("?q=needle%40example"));

    // Filter the dead email jobs, ask to retry them all: the page names the count first.
    browser
        .execute(
            "const q = document.getElementById('filter-q'); q.value = ''; \
             document.getElementById('filter-queue').value = 'email'; \
             const s = document.getElementById('filter-status'); s.value = 'dead'; \
             s.dispatchEvent(new Event('change')); return 0;",
            vec![],
        )
        .await;
    browser
        .wait_text("#jobs-page", Duration::from_secs(20), |t| {
            t.contains("(50 jobs)")
        })
        .await;
    browser.click("#bulk-retry").await;
    let question = browser
        .wait_text("#bulk-question", Duration::from_secs(10), |t| !t.is_empty())
        .await;
    assert_eq!(question, "Retry 50 dead email jobs?");
    std::fs::write(
        docs().join("dashboard-bulk-retry.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.click("#bulk-yes").await;
    browser
        .wait_text("#jobs-note", Duration::from_secs(30), |t| {
            t.contains("50 jobs retried")
        })
        .await;
    // The SMTP server takes messages again: all 50 are sent.
    wait_email_count(&base, &token, "done", 50).await;
    assert_eq!(email_count(&base, &token, "dead").await, 0);
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// True when the element, scrolled to vertically only, is visible inside the viewport's width
/// and its table needs no sideways scrolling.
async fn within_width(browser: &Session, css: &str) -> bool {
    browser
        .execute(
            "const e = document.querySelector(arguments[0]); if (!e || e.offsetParent === null) \
             return false; window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 200); \
             const r = e.getBoundingClientRect(); const box = e.closest('.scroll'); \
             return r.left >= 0 && r.right <= document.documentElement.clientWidth \
             && (!box || box.scrollWidth <= box.clientWidth);",
            vec![json!(css)],
        )
        .await
        == json!(true)
}

/// At 390 px wide every queue column and action and every job's status are on screen: the
/// admin reads a dead job's status and pauses a queue from a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_reaches_pause_and_status_at_390_px() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let (vigil, daemon, base, token) =
        run_with_admin(smtp.port(), &[("VIGIL_RATE_LIMIT__ENABLED", "false")]).await;
    let id = enqueue_email(
        &base,
        &token,
        json!({"payload": {"to": ["later@example.com"], "subject": "later", "body": {"text": "x"}},
               "delay_seconds": 3600}),
    )
    .await;
    let driver = Driver::start().await;
    let phone = driver.phone(390, 844).await;
    sign_in(&phone, &base, "admin").await;
    let width = phone
        .execute("return document.documentElement.clientWidth;", vec![])
        .await;
    assert!(width.as_u64().is_some_and(|w| w <= 390), "{width}");
    let status = format!("tr[data-job='{id}'] td[data-label=Status]");
    phone
        .wait_text(&status, Duration::from_secs(20), |t| t == "scheduled")
        .await;
    let pause = "tr[data-queue=email] button[aria-label='pause queue email']";
    for css in [
        status.as_str(),
        "tr[data-queue=email] td[data-count=dead]",
        "tr[data-queue=email] td[data-label=State]",
        pause,
    ] {
        let shown = within_width(&phone, css).await;
        let layout = phone
            .execute(
                "const e = document.querySelector(arguments[0]); const r = e.getBoundingClientRect(); \
                 const b = e.closest('.scroll'); return [r.left, r.right, \
                 document.documentElement.clientWidth, b && b.scrollWidth, b && b.clientWidth];",
                vec![json!(css)],
            )
            .await;
        assert!(shown, "{css} is off screen at 390 px: {layout}");
    }
    std::fs::write(docs().join("dashboard-phone.png"), phone.screenshot().await).unwrap();
    phone.click(pause).await;
    phone
        .wait_text(
            "tr[data-queue=email] td[data-label=State]",
            Duration::from_secs(20),
            |t| t == "paused",
        )
        .await;
    let queues = get_json(&base, &token, "/api/v1/queues").await;
    let email = queues["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "email")
        .unwrap();
    assert_eq!(email["paused"], true, "{email}");
    phone.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// "Sign in with Okta" end to end: the page offers it, the browser goes to the identity
/// provider (the test kit's, which signs in an analyst), comes back through vigil's callback
/// and lands in the dashboard with the mapped role and no admin buttons; after signing out,
/// a local password still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_okta_and_gets_the_role_of_their_groups() {
    require_chromium();
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

/// The alert page (#/alerts/ID, the link every channel sends): each notification of each
/// level with its outcome — the Slack message sent with Slack's answer, the webhook dead with
/// every error — the level marked failed, and a Retry that delivers the dead one once the
/// receiver is back; the admin reopens the alert from the same page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_page_shows_each_notification_and_retries_a_dead_one() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let channels =
        vigil_testkit::channels::ChannelReceiver::start("R0UT1NGKEY0123456789abcdef012345").await;
    let hooks = vigil_testkit::webhook::WebhookReceiver::start().await;
    hooks.answer_next(&[503, 503]); // both attempts of the level's webhook fail
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_QUEUES__NOTIFICATION__MAX_ATTEMPTS", "2"),
            ("VIGIL_QUEUES__NOTIFICATION__BACKOFF_BASE_MS", "100"),
            ("VIGIL_QUEUES__NOTIFICATION__BACKOFF_MAX_MS", "200"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        format!(
            "[escalation]\nwebhook_secret = \"browser-webhook-secret\"\n\
             escalate_on_failure = false\n\n\
             [escalation.channels.soc-slack]\nkind = \"slack\"\nurl = \"{}\"\n\n\
             [[escalation.policies]]\nname = \"soc\"\nseverities = [\"critical\"]\nlevels = [\n\
             {{ after_seconds = 0, channels = [\"soc-slack\"], webhooks = [\"{}\"] }},\n]\n",
            channels.slack_url(),
            hooks.url("/hook")
        ),
    )
    .unwrap();
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    let (status, event) = post_json(
        &base,
        &token,
        "/api/v1/events/security",
        &json!({"source": "edr", "event_type": "malware.detected", "severity": 4,
                "description": "beacon on laptop-9"}),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    let id = event["alert_id"].as_i64().unwrap();

    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    sign_in(&browser, &base, "admin").await;
    // The channel's link opens the alert's page.
    browser
        .goto(&format!("{base}/dashboard/#/alerts/{id}"))
        .await;
    browser
        .wait_text("#alert-detail-id", Duration::from_secs(20), |t| {
            t == id.to_string()
        })
        .await;
    let rows = "#alert-detail-escalations tr[data-notification]";
    // The Slack message goes out; the webhook's two attempts fail and it dies.
    browser
        .wait_text("#alert-detail-escalations", Duration::from_secs(60), |t| {
            t.contains("dead") && t.contains("sent")
        })
        .await;
    let shown = browser
        .execute(
            &format!(
                "return [...document.querySelectorAll(\"{rows}\")].map(tr => \
                 [...tr.cells].map(td => td.textContent));"
            ),
            vec![],
        )
        .await;
    let shown: Vec<Vec<String>> = serde_json::from_value(shown).unwrap();
    assert_eq!(shown.len(), 2, "{shown:?}");
    let slack = shown
        .iter()
        .find(|r| r[0] == "slack")
        .expect("the Slack row");
    assert_eq!(slack[1], "slack:soc-slack");
    assert_eq!(slack[3], "sent");
    assert!(
        slack[5].contains("200"),
        "Slack's answer is shown: {slack:?}"
    );
    let webhook = shown
        .iter()
        .find(|r| r[0] == "webhook")
        .expect("the webhook row");
    assert_eq!(webhook[3], "dead");
    assert_eq!(webhook[4], "2", "{webhook:?}");
    assert_eq!(
        webhook[6].lines().filter(|l| l.contains("503")).count(),
        2,
        "every attempt's error: {webhook:?}"
    );
    let heading = browser.text("#alert-detail-escalations h5").await.unwrap();
    assert!(
        heading.contains("level 1") && heading.contains("partial"),
        "one of two notifications died: {heading}"
    );
    let dead_note = browser.text("#alert-detail-dead").await.unwrap();
    assert_eq!(dead_note, "1 notification could not be delivered.");
    browser
        .execute(
            "document.getElementById('alert-detail-escalations').scrollIntoView({block: 'center'}); return 0;",
            vec![],
        )
        .await;
    std::fs::write(
        docs().join("dashboard-alert-page.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // The receiver is back: Retry on the dead row delivers it, and the page shows it sent.
    let detail = get_json(&base, &token, &format!("/api/v1/alerts/{id}")).await;
    let dead_id = detail["escalations"][0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["status"] == "dead")
        .expect("a dead notification")["id"]
        .as_i64()
        .unwrap();
    browser
        .click(&format!(
            "button[aria-label='retry notification {dead_id}']"
        ))
        .await;
    browser
        .wait_text(
            &format!("tr[data-notification='{dead_id}']"),
            Duration::from_secs(30),
            |t| t.contains("sent"),
        )
        .await;
    assert_eq!(
        hooks.received().len(),
        3,
        "two refused attempts, then the retried delivery"
    );

    // Resolve, then reopen from the page: the history shows both.
    browser
        .click(&format!("button[aria-label='resolve alert {id}']"))
        .await;
    browser
        .wait_text("#alert-detail-fields", Duration::from_secs(20), |t| {
            t.contains("resolved")
        })
        .await;
    browser
        .click(&format!(
            "#alert-detail-actions button[aria-label='reopen alert {id}']"
        ))
        .await;
    browser
        .wait_text("#alert-detail-transitions", Duration::from_secs(20), |t| {
            t.contains("reopen by user:admin")
        })
        .await;
    let alert = get_json(&base, &token, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "open", "{alert}");

    // The list's filters: no low-severity alert; critical ones include this one.
    choose(&browser, "alerts-severity", "low").await;
    browser
        .wait_text("#alerts-note", Duration::from_secs(20), |t| {
            t == "No alert matches these filters."
        })
        .await;
    choose(&browser, "alerts-severity", "critical").await;
    browser
        .wait_text(
            &format!("tr[data-alert='{id}']"),
            Duration::from_secs(20),
            |t| t.contains("critical"),
        )
        .await;
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// Schedules from the page: an admin switches one off (every instance), runs it now while
/// it is off, sees the run with its job in the schedule's history, and switches it back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disables_a_schedule_and_runs_it_now_from_the_dashboard() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let (vigil, daemon, base, token) =
        run_with_admin(smtp.port(), &[("VIGIL_RATE_LIMIT__ENABLED", "false")]).await;
    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    sign_in(&browser, &base, "admin").await;

    let row = "tr[data-schedule='alert_escalation']";
    browser
        .wait_text(row, Duration::from_secs(20), |t| t.contains("30 * * * * *"))
        .await;
    browser
        .click("button[aria-label='disable schedule alert_escalation']")
        .await;
    browser
        .wait_text(row, Duration::from_secs(20), |t| {
            t.contains("off: switched off by user:admin")
        })
        .await;
    browser
        .click("button[aria-label='run schedule alert_escalation now']")
        .await;
    browser
        .wait_text(row, Duration::from_secs(20), |t| {
            t.contains("(run by user:admin)")
        })
        .await;
    // The run's job is run by the daemon's worker; the history shows it done.
    browser.click(row).await;
    browser
        .wait_text("#schedule-detail-runs", Duration::from_secs(30), |t| {
            t.contains("user:admin") && t.contains("done")
        })
        .await;
    let listed = get_json(&base, &token, "/api/v1/schedules").await;
    let s = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "alert_escalation")
        .unwrap()
        .clone();
    assert_eq!(s["enabled"], false, "{s}");
    assert_eq!(s["disabled_by"], "user:admin");
    browser
        .execute(
            "document.querySelector('#schedules .scroll').scrollLeft = 0; \
             document.getElementById('schedules').scrollIntoView({block: 'start'}); return 0;",
            vec![],
        )
        .await;
    // Settled: the table is scrolled back to its first column.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while browser
        .execute(
            "return document.querySelector('#schedules .scroll').scrollLeft;",
            vec![],
        )
        .await
        != json!(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the table never scrolled back"
        );
    }
    std::fs::write(
        docs().join("dashboard-schedules.png"),
        browser.screenshot().await,
    )
    .unwrap();

    browser
        .click("button[aria-label='enable schedule alert_escalation']")
        .await;
    browser
        .wait_text(row, Duration::from_secs(20), |t| !t.contains("off:"))
        .await;
    let runs = get_json(&base, &token, "/api/v1/schedules/alert_escalation/runs").await;
    assert_eq!(runs["results"][0]["manual_by"], "user:admin", "{runs}");
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// The audit trail from the page: filtered by action, paged 20 at a time, and the chain
/// verified by an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_filters_pages_and_verifies_the_audit_trail() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    let (vigil, daemon, base, token) =
        run_with_admin(smtp.port(), &[("VIGIL_RATE_LIMIT__ENABLED", "false")]).await;
    for i in 0..25 {
        enqueue_email(
            &base,
            &token,
            json!({"payload": {"to": ["soc@example.com"], "subject": format!("audit {i}"),
                               "body": {"text": "x"}}}),
        )
        .await;
    }
    // Every enqueue is in the trail (the audit queue's writer has stored them).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get_json(
        &base,
        &token,
        "/api/v1/audit-logs?action=job.enqueue&page_size=1",
    )
    .await["count"]
        != json!(25)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the enqueues never reached the trail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let driver = Driver::start().await;
    let browser = driver.session(1280, 900).await;
    sign_in(&browser, &base, "admin").await;
    browser.type_into("#audit-action", "job.enqueue").await;
    browser
        .wait_text("#audit-page", Duration::from_secs(20), |t| {
            t == "page 1 of 2 (25 records)"
        })
        .await;
    let actions = browser
        .execute(
            "return [...document.querySelectorAll('#audit-body tr')].map(tr => tr.cells[3].textContent);",
            vec![],
        )
        .await;
    let actions: Vec<String> = serde_json::from_value(actions).unwrap();
    assert_eq!(actions.len(), 20);
    assert!(actions.iter().all(|a| a == "job.enqueue"), "{actions:?}");
    browser.click("#audit-next").await;
    browser
        .wait_text("#audit-page", Duration::from_secs(20), |t| {
            t == "page 2 of 2 (25 records)"
        })
        .await;
    let rows = browser
        .execute(
            "return document.querySelectorAll('#audit-body tr').length;",
            vec![],
        )
        .await;
    assert_eq!(rows, json!(5));
    browser.click("#audit-verify").await;
    let verified = browser
        .wait_text("#audit-verified", Duration::from_secs(20), |t| {
            t.starts_with("Chain verified:")
        })
        .await;
    let total = get_json(&base, &token, "/api/v1/audit-logs?page_size=1").await["count"]
        .as_u64()
        .unwrap();
    assert!(total >= 26, "the enqueues and the sign-ins: {total}");
    assert!(verified.contains("records."), "{verified}");
    browser
        .execute(
            "document.getElementById('audit').scrollIntoView({block: 'start'}); return 0;",
            vec![],
        )
        .await;
    std::fs::write(
        docs().join("dashboard-audit.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// The incident flow of the operator console: the spike shows on the email queue's chart
/// and sparkline, the failing job is found by its error text, its page (deep link) shows the
/// timeline of the failed attempt, the admin retries it there, and the timeline then shows
/// who retried it and the attempt that finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_spike_opens_the_failing_job_and_retries_it_from_its_page() {
    require_chromium();
    let smtp = SmtpServer::start().await;
    smtp.inject(Stage::Data, "554 5.7.1 relay refused", Some(1));
    let (vigil, daemon, base, token) = run_with_admin(
        smtp.port(),
        &[
            ("VIGIL_QUEUES__EMAIL__MAX_ATTEMPTS", "1"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    )
    .await;
    let failing = enqueue_email(
        &base,
        &token,
        json!({"payload": {"to": ["first@example.com"], "subject": "s", "body": {"text": "x"}}}),
    )
    .await;
    assert_eq!(
        wait_status(&base, &token, &failing, "dead").await["status"],
        "dead"
    );
    for i in 0..20 {
        enqueue_email(
            &base,
            &token,
            json!({"payload": {"to": [format!("user{i}@example.com")], "subject": "s", "body": {"text": "x"}}}),
        )
        .await;
    }
    wait_email_count(&base, &token, "done", 20).await;

    let driver = Driver::start().await;
    let browser = driver.session(1280, 1000).await;
    sign_in(&browser, &base, "admin").await;
    // The chart of the email queue (the first queue offered may be another: choose email
    // once the stream has offered it).
    choose(&browser, "chart-queue", "email").await;
    let chart = "#charts-body figure:first-child svg";
    let label = browser
        .wait_text("#charts-body", Duration::from_secs(20), |t| {
            t.contains("email: jobs per minute")
        })
        .await;
    assert!(label.contains("retrying"), "{label}");
    let summary = browser
        .execute(
            &format!("return document.querySelector('{chart}').getAttribute('aria-label');"),
            vec![],
        )
        .await;
    let summary = summary.as_str().unwrap().to_owned();
    assert!(
        summary.contains("done peak ") && !summary.contains("done peak 0 "),
        "{summary}"
    );
    assert!(summary.contains("dead peak 1 "), "{summary}");
    let spark_label = wait_js(
        &browser,
        "const s = document.querySelector('td[data-spark=email] svg'); \
         return s ? s.getAttribute('aria-label') : null;",
        |v| v.is_string(),
    )
    .await;
    assert!(
        spark_label
            .as_str()
            .is_some_and(|l| l.starts_with("email: 20 done in the last hour")),
        "{spark_label}"
    );
    browser
        .execute(
            "document.getElementById('charts').scrollIntoView({block: 'start'}); return 0;",
            vec![],
        )
        .await;
    std::fs::write(
        docs().join("dashboard-charts.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // Find the failing job by its error text (among email jobs: the audit trail's jobs
    // quote it too) and open its page.
    choose(&browser, "filter-queue", "email").await;
    browser.type_into("#filter-q", "relay refused").await;
    browser
        .wait_text("#jobs-page", Duration::from_secs(20), |t| {
            t.contains("(1 jobs)")
        })
        .await;
    let row = format!("tr[data-job='{failing}']");
    browser.click(&row).await;
    let timeline = browser
        .wait_text("#job-detail-timeline", Duration::from_secs(20), |t| {
            t.contains("attempt 1 failed, job dead")
        })
        .await;
    assert!(timeline.contains("enqueued by user:admin"), "{timeline}");
    assert!(timeline.contains("attempt 1 started on run@"), "{timeline}");
    let hash = browser.execute("return location.hash;", vec![]).await;
    assert_eq!(hash, json!(format!("#/jobs/{failing}")));

    // Retry from the job page: the job is sent, and its timeline says who retried it.
    browser
        .click(&format!(
            "#job-detail-actions button[aria-label='retry job {failing}']"
        ))
        .await;
    assert_eq!(
        wait_status(&base, &token, &failing, "done").await["status"],
        "done"
    );
    let timeline = browser
        .wait_text("#job-detail-timeline", Duration::from_secs(30), |t| {
            t.contains("retried by user:admin") && t.contains("attempt 2 done")
        })
        .await;
    assert!(
        timeline.find("retried by").unwrap() < timeline.find("attempt 2 started").unwrap(),
        "{timeline}"
    );
    std::fs::write(
        docs().join("dashboard-job-page.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.close().await;

    // The job's link opens the dashboard on that job.
    let other = driver.session(1280, 900).await;
    sign_in(&other, &base, "admin").await;
    other
        .goto(&format!("{base}/dashboard/jobs/{failing}"))
        .await;
    let opened = other
        .wait_text("#job-detail-id", Duration::from_secs(20), |t| t == failing)
        .await;
    assert_eq!(opened, failing);
    other.close().await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

/// Runs `script` until its answer passes `ok` (20 s at most); returns the answer.
async fn wait_js(browser: &Session, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = browser.execute(script, vec![]).await;
        if ok(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {script} answered {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
