//! Many Okta orgs against two fake orgs (two instances of the test kit's fake, one OAuth +
//! DPoP, one SSWS): each event stored once with its org, cursors independent, one org
//! failing does not stop the other, a job naming an org fetches only it, metrics per org,
//! and `[[okta.orgs]]` mistakes named by key.

mod common;
mod okta_common;

use std::sync::Arc;

use okta_common::*;
use secrecy::SecretString;
use vigil_jobs::Job as _;
use vigil_jobs::OktaFetchJob;
use vigil_store::events::{self, EventQuery};
use vigil_store::okta_cursor;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::{FakeOkta, Fault};
use vigil_workers::JobError;
use vigil_workers::okta::{
    OktaAuthMode, OktaMetrics, OktaOrgSettings, OktaOrgs, OktaPoller, OktaSettings,
};
use vigil_workers::runtime::JobContext;

fn ctx() -> JobContext {
    JobContext {
        job_id: vigil_queue::new_job_id(OktaFetchJob::QUEUE),
        queue: OktaFetchJob::QUEUE,
        attempt: 1,
        max_attempts: 3,
        token: "w:1".to_owned(),
        batch_size: 1,
        batch_linger: std::time::Duration::ZERO,
    }
}

/// Two fake orgs, `alpha` (OAuth + DPoP) and `beta` (SSWS), and pollers for them.
async fn two_orgs(db: &vigil_store::Db, metrics: &OktaMetrics) -> (FakeOkta, FakeOkta, OktaOrgs) {
    let (alpha, a) = oauth_org().await;
    let (beta, b) = ssws_org("00beta-ssws-token").await;
    let pollers = vec![
        OktaPoller::for_org("alpha", a, db.clone(), Some(metrics.clone())).unwrap(),
        OktaPoller::for_org("beta", b, db.clone(), Some(metrics.clone())).unwrap(),
    ];
    (alpha, beta, OktaOrgs::new(pollers))
}

async fn uuids_of(db: &vigil_store::Db, org: &str) -> Vec<String> {
    let q = EventQuery {
        org: Some(org.to_owned()),
        limit: 1000,
        ..Default::default()
    };
    let mut u: Vec<String> = events::list(db, &q)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| {
            assert_eq!(e.org, org);
            e.uuid
        })
        .collect();
    u.sort();
    u
}

fn uuids(from: u64, to: u64) -> Vec<String> {
    let mut u: Vec<String> = events(from, to, recent())
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_owned())
        .collect();
    u.sort();
    u
}

#[tokio::test]
async fn two_orgs_are_polled_each_event_stored_once_with_its_org_and_cursors_apart() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let metrics = OktaMetrics::register(&prometheus::Registry::new()).unwrap();
        let (alpha, beta, orgs) = two_orgs(&t.db, &metrics).await;
        alpha.add_events(events(0, 250, recent()));
        beta.add_events(events(1000, 1120, recent()));

        let done = orgs.fetch(&ctx(), &OktaFetchJob::default()).await.unwrap();
        assert_eq!(done["alpha"].stored, 250, "{kind:?}: {done:?}");
        assert_eq!(done["beta"].stored, 120, "{kind:?}: {done:?}");
        assert_eq!(counts(&t.db).await, (370, 370), "{kind:?}: each event once");
        assert_eq!(uuids_of(&t.db, "alpha").await, uuids(0, 250), "{kind:?}");
        assert_eq!(uuids_of(&t.db, "beta").await, uuids(1000, 1120), "{kind:?}");

        // Each org resumes from its own cursor, pointing at its own domain.
        let ca = okta_cursor::load(&t.db, "alpha").await.unwrap().unwrap();
        let cb = okta_cursor::load(&t.db, "beta").await.unwrap().unwrap();
        assert!(ca.next_url.starts_with(&alpha.base_url()), "{kind:?}");
        assert!(cb.next_url.starts_with(&beta.base_url()), "{kind:?}");

        // New events in alpha only: alpha stores them, beta asks once and finds nothing,
        // its cursor unchanged.
        alpha.add_events(events(250, 260, recent()));
        let beta_requests = beta.counters().logs_requests;
        let done = orgs.fetch(&ctx(), &OktaFetchJob::default()).await.unwrap();
        assert_eq!(
            (done["alpha"].stored, done["beta"].stored),
            (10, 0),
            "{kind:?}"
        );
        assert_eq!(beta.counters().logs_requests, beta_requests + 1, "{kind:?}");
        let cb2 = okta_cursor::load(&t.db, "beta").await.unwrap().unwrap();
        assert_eq!(cb2.next_url, cb.next_url, "{kind:?}");
        assert_eq!(counts(&t.db).await, (380, 380), "{kind:?}");

        // Metrics and health per org.
        assert_eq!(
            metrics.org("alpha").events_ingested().get(),
            260,
            "{kind:?}"
        );
        assert_eq!(metrics.org("beta").events_ingested().get(), 120, "{kind:?}");
        assert_eq!(metrics.up.with_label_values(&["beta"]).get(), 1);
        assert!(metrics.org("beta").requests("logs", "200").get() >= 2);
    }
}

#[tokio::test]
async fn one_org_failing_does_not_stop_the_other() {
    let t = TestDb::sqlite().await;
    let metrics = OktaMetrics::register(&prometheus::Registry::new()).unwrap();
    let (alpha, beta, orgs) = two_orgs(&t.db, &metrics).await;
    alpha.add_events(events(0, 150, recent()));
    beta.add_events(events(1000, 1050, recent()));
    // alpha (the first org) answers 500 to everything: its retries give up, beta goes on.
    alpha.inject_every(Some((1, Fault::ServerError)));

    let err = orgs
        .fetch(&ctx(), &OktaFetchJob::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JobError::Retryable(m) if m.contains("org alpha") && !m.contains("org beta")),
        "{err:?}"
    );
    assert_eq!(uuids_of(&t.db, "beta").await, uuids(1000, 1050));
    assert!(uuids_of(&t.db, "alpha").await.is_empty());
    assert!(okta_cursor::load(&t.db, "alpha").await.unwrap().is_none());
    assert_eq!(metrics.up.with_label_values(&["alpha"]).get(), 0);
    assert_eq!(metrics.up.with_label_values(&["beta"]).get(), 1);

    // alpha recovers: the next job fetches it; beta has nothing new.
    alpha.inject_every(None);
    let done = orgs.fetch(&ctx(), &OktaFetchJob::default()).await.unwrap();
    assert_eq!((done["alpha"].stored, done["beta"].stored), (150, 0));
    assert_eq!(counts(&t.db).await, (200, 200));
}

#[tokio::test]
async fn a_job_naming_an_org_fetches_that_org_only() {
    let t = TestDb::sqlite().await;
    let metrics = OktaMetrics::register(&prometheus::Registry::new()).unwrap();
    let (alpha, beta, orgs) = two_orgs(&t.db, &metrics).await;
    // One instant for every event and window here: two calls to recent() can
    // straddle a second.
    let base = recent();
    alpha.add_events(events(0, 30, base));
    beta.add_events(events(1000, 1040, base));
    let job = OktaFetchJob {
        org: Some("beta".to_owned()),
        ..Default::default()
    };
    let done = orgs.fetch(&ctx(), &job).await.unwrap();
    assert_eq!(done.keys().collect::<Vec<_>>(), ["beta"]);
    assert_eq!(alpha.counters().logs_requests, 0);
    assert_eq!(uuids_of(&t.db, "beta").await, uuids(1000, 1040));

    // A bounded window on one org.
    let job = OktaFetchJob {
        org: Some("alpha".to_owned()),
        since: Some(base),
        ..Default::default()
    };
    let done = orgs.fetch(&ctx(), &job).await.unwrap();
    assert_eq!(done["alpha"].stored, 30);
    assert_eq!(
        done["alpha"].position,
        Some(base + chrono::Duration::seconds(29)),
        "the backfill's position is its newest stored event"
    );

    let unknown = OktaFetchJob {
        org: Some("gamma".to_owned()),
        ..Default::default()
    };
    let err = orgs.fetch(&ctx(), &unknown).await.unwrap_err();
    assert!(
        matches!(&err, JobError::Permanent(m) if m.contains("gamma") && m.contains("alpha, beta")),
        "{err:?}"
    );
}

fn org(name: &str, domain: &str) -> OktaOrgSettings {
    OktaOrgSettings {
        name: name.to_owned(),
        domain: domain.to_owned(),
        auth: Some(OktaAuthMode::Ssws),
        api_token: Some(SecretString::from("t".to_owned())),
        ..Default::default()
    }
}

#[test]
fn a_single_okta_section_is_the_default_org_and_org_mistakes_name_their_key() {
    let single = OktaSettings {
        domain: "https://acme.okta.com".to_owned(),
        ..Default::default()
    };
    let orgs = single.orgs().unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].name, "default");
    assert_eq!(orgs[0].settings.domain, "https://acme.okta.com");

    let many = OktaSettings {
        page_limit: 200,
        orgs: vec![
            org("eu", "https://eu.okta.com"),
            org("us", "https://us.okta.com"),
        ],
        ..Default::default()
    };
    let orgs = many.orgs().unwrap();
    assert_eq!(
        orgs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["eu", "us"]
    );
    assert_eq!(orgs[1].settings.domain, "https://us.okta.com");
    assert_eq!(orgs[1].settings.page_limit, 200, "tuning comes from [okta]");

    let err = |s: OktaSettings| s.orgs().unwrap_err().to_string();
    let mut dup = many.clone();
    dup.orgs[1].name = "eu".to_owned();
    assert!(err(dup).contains("okta.orgs[1].name: duplicate org name `eu`"));
    let mut nodomain = many.clone();
    nodomain.orgs[0].domain = String::new();
    assert!(err(nodomain).contains("okta.orgs[0].domain: missing"));
    let mut badname = many.clone();
    badname.orgs[1].name = "US East".to_owned();
    assert!(err(badname).contains("okta.orgs[1].name: must be"));
    let mut both = many.clone();
    both.domain = "https://acme.okta.com".to_owned();
    assert!(err(both).contains("okta.domain: set together with [[okta.orgs]]"));
    let mut samedomain = many.clone();
    samedomain.orgs[1].domain = "https://EU.okta.com/".to_owned();
    assert!(err(samedomain).contains("okta.orgs[1].domain: the same Okta org as okta.orgs[0]"));
    let mut nofile = many;
    nofile.orgs[0].api_token_file = Some("/nonexistent/okta-token".into());
    assert!(err(nofile).contains("okta.orgs[0].api_token_file: cannot read"));
}

#[tokio::test]
async fn rules_group_by_org_and_alerts_carry_the_org() {
    let t = TestDb::postgres().await;
    let prefix = vigil_testkit::redis::unique_prefix("okta-orgs-rules");
    let engine = common::engine(&prefix, |_, _| {}).await;
    let rule: vigil_rules::RuleDef = serde_json::from_value(serde_json::json!({
        "id": "failures_per_org", "title": "Failed sign-ins in one org", "severity": "medium",
        "match": [{"event_types": ["user.session.start"],
                   "conditions": [{"field": "outcome.result", "equals": "FAILURE"}]}],
        "group_by": ["vigil.org"],
        "threshold": {"window_seconds": 86_400, "count": 5}
    }))
    .unwrap();
    let rules = vigil_rules::RuleSet::load(&vigil_rules::RulesSettings {
        custom: vec![rule],
        ..Default::default()
    })
    .unwrap();
    let detector = Arc::new(vigil_workers::alerts::Detector::new(
        Arc::new(rules),
        Arc::new(vigil_rules::RedisWindows::new(
            engine.redis(),
            engine.prefix(),
        )),
        t.db.clone(),
        engine.clone(),
        Arc::new(vigil_jobs::EscalationSettings::default()),
        None,
    ));
    let (alpha, a) = oauth_org().await;
    let (beta, b) = ssws_org("00beta-ssws-token").await;
    let orgs = OktaOrgs::new(vec![
        OktaPoller::for_org("alpha", a, t.db.clone(), None)
            .unwrap()
            .with_sink(detector.clone()),
        OktaPoller::for_org("beta", b, t.db.clone(), None)
            .unwrap()
            .with_sink(detector.clone()),
    ]);
    // 10 failures in each org (every 5th generated event fails).
    alpha.add_events(events(0, 50, recent()));
    beta.add_events(events(1000, 1050, recent()));
    orgs.fetch(&ctx(), &OktaFetchJob::default()).await.unwrap();

    let page = vigil_store::alerts::list(
        &t.db,
        &vigil_store::alerts::AlertQuery {
            rule_id: Some("failures_per_org".to_owned()),
            page: 1,
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut found: Vec<(String, Option<String>, i64)> = page
        .items
        .iter()
        .map(|a| (a.group_key.clone(), a.org.clone(), a.event_count))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("alpha".to_owned(), Some("alpha".to_owned()), 10),
            ("beta".to_owned(), Some("beta".to_owned()), 10)
        ],
        "one alert per org, each naming its org"
    );
    common::cleanup(&engine).await;
}
