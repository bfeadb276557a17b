//! Schedules from the API: an admin switches one off and on for every instance, runs it now
//! (even while off), and reads its runs with each job's status; analysts only read; unknown
//! schedules are 404; every action is audited.

mod common;

use common::TestApp;
use serde_json::json;

const S: &str = "/api/v1/schedules/okta_fetch";

/// The `okta_fetch` schedule as `GET /api/v1/schedules` lists it.
async fn listed(app: &TestApp, token: &str) -> serde_json::Value {
    let all = app.get("/api/v1/schedules", Some(token)).await;
    all.expect(200);
    all.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "okta_fetch")
        .expect("okta_fetch is listed")
        .clone()
}

#[tokio::test]
async fn an_admin_switches_a_schedule_off_runs_it_now_and_reads_its_runs() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    for action in ["disable", "enable", "run"] {
        let a = app
            .post(&format!("{S}/{action}"), Some(&analyst), json!({}))
            .await;
        a.expect(403);
    }
    let a = app
        .post("/api/v1/schedules/nope/disable", Some(&admin), json!({}))
        .await;
    a.expect(404);
    assert_eq!(a.code(), "not_found");
    app.get("/api/v1/schedules/nope/runs", Some(&analyst))
        .await
        .expect(404);

    // Off for every instance: no next run, and who did it.
    let off = app
        .post(&format!("{S}/disable"), Some(&admin), json!({}))
        .await;
    off.expect(200);
    assert_eq!(off.body["enabled"], false, "{}", off.body);
    assert_eq!(off.body["disabled_by"], "user:admin");
    assert!(off.body["disabled_at"].is_string());
    assert!(off.body["next_run"].is_null());
    assert!(
        off.body["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("switched off by user:admin"),
        "{}",
        off.body
    );
    let okta = listed(&app, &analyst).await;
    assert_eq!(okta["enabled"], false);

    // Run now, while off: the job is enqueued at once and the run says who ran it.
    let run = app.post(&format!("{S}/run"), Some(&admin), json!({})).await;
    run.expect(202);
    let job_id = run.body["job_id"].as_str().unwrap().to_owned();
    assert_eq!(run.body["manual_by"], "user:admin");
    assert_eq!(run.body["job_status"], "pending");
    assert_eq!(run.body["links"]["self"], format!("/api/v1/jobs/{job_id}"));
    let job = app
        .get(&format!("/api/v1/jobs/{job_id}"), Some(&analyst))
        .await;
    job.expect(200);
    assert_eq!(job.body["queue"], "okta_fetch");

    // Its runs, newest first, with the job's status now; the list's last run is this one.
    let runs = app.get(&format!("{S}/runs"), Some(&analyst)).await;
    runs.expect(200);
    assert_eq!(runs.body["count"], 1, "{}", runs.body);
    assert_eq!(runs.body["results"][0]["job_id"], job_id.as_str());
    assert_eq!(runs.body["results"][0]["manual_by"], "user:admin");
    assert_eq!(runs.body["results"][0]["job_status"], "pending");
    app.get(&format!("{S}/runs?limit=0"), Some(&analyst))
        .await
        .expect(400);
    let okta = listed(&app, &analyst).await;
    assert_eq!(okta["last_run"]["job_id"], job_id.as_str());

    // On again.
    let on = app
        .post(&format!("{S}/enable"), Some(&admin), json!({}))
        .await;
    on.expect(200);
    assert_eq!(on.body["enabled"], true, "{}", on.body);
    assert!(on.body["next_run"].is_string());
    assert!(on.body.get("disabled_by").is_none(), "{}", on.body);

    let audited = app.audited().await;
    for action in ["schedule.disable", "schedule.run", "schedule.enable"] {
        assert!(
            audited
                .iter()
                .any(|p| p["action"] == action && p["target_id"] == "okta_fetch"),
            "{action} audited: {audited:?}"
        );
    }
}
