//! The container setup, checked by reading it: docker-compose.yml's health checks run a
//! command the image has (`vigil healthcheck`, no shell tricks), ports bind 127.0.0.1 and do
//! not collide with the quickstart's local Redis, `.dockerignore` keeps secrets out of the
//! build context. And `vigil healthcheck` itself, against a live and a missing vigil.

mod support;

use std::path::Path;

use serde_yaml::Value;
use support::{Deployment, NO_ENV, text, vigil};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn vigil_images_are_checked_by_a_command_the_image_has() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let mut checked = 0;
    for (name, service) in services {
        if service["build"].as_str() != Some(".") {
            continue;
        }
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name:?} has no healthcheck"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            &test[..2],
            ["CMD", "vigil"],
            "{name:?}: exec form, no shell: {test:?}"
        );
        // The image's entrypoint is this binary: the command must exist in it.
        let mut help: Vec<&str> = test[2..].to_vec();
        help.push("--help");
        let out = vigil(repo(), &help, NO_ENV);
        assert!(
            out.status.success(),
            "{name:?}: vigil {help:?}: {}",
            text(&out)
        );
        checked += 1;
    }
    assert!(checked >= 2, "vigil and worker services");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(r#"HEALTHCHECK"#)
            && dockerfile.contains(r#"CMD ["vigil", "healthcheck"]"#)
    );
}

#[test]
fn published_ports_bind_loopback_and_leave_the_local_redis_alone() {
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} beyond loopback"
            );
            assert!(
                !port.contains(":6379:"),
                "{name:?} takes the quickstart's Redis port"
            );
        }
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for needed in ["secrets", ".env", "data", "target"] {
        assert!(
            ignore.lines().any(|l| l == needed),
            ".dockerignore lacks {needed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_on_a_live_vigil_and_fails_in_one_line_otherwise() {
    let vigil = Deployment::new(2525, &[]);
    let daemon = vigil.start("run").await;
    let out = vigil.command(&["healthcheck"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    drop(daemon);
    let out = vigil.command(&["healthcheck"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}/health is not answering", vigil.base())),
        "{stderr}"
    );
    vigil.clean_redis().await;
}
