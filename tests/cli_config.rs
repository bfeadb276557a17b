//! `vigil check-config` and `vigil migrate` as an operator runs them: the real binary, real
//! files, real environment variables.

mod support;

use std::path::Path;

use support::{NO_ENV, text, vigil};

#[test]
fn the_shipped_config_file_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = vigil(
        repo,
        &["--config", "config.toml", "check-config"],
        support::WITH_SECRET,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("[database]"));
}

#[test]
fn a_wrong_type_in_the_file_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vigil.toml"),
        "[database]\nmax_connections = \"ten\"\n",
    )
    .unwrap();
    let out = vigil(
        dir.path(),
        &["--config", "vigil.toml", "check-config"],
        NO_ENV,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("database.max_connections"), "{t}");
    assert!(t.contains("vigil.toml"), "{t}");
}

#[test]
fn a_wrong_type_in_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil(
        dir.path(),
        &["check-config"],
        &[("VIGIL_DATABASE__MAX_CONNECTIONS", "lots")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("VIGIL_DATABASE__MAX_CONNECTIONS"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_variables_warn_and_secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db_url");
    std::fs::write(&secret, "postgres://vigil:hunter2-secret@db/vigil\n").unwrap();
    let out = vigil(
        dir.path(),
        &["check-config"],
        &[
            ("VIGIL_DATABASE__URL_FILE", secret.to_str().unwrap()),
            ("VIGIL_DATABSE__URL", "typo"),
            support::JWT_SECRET,
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("VIGIL_DATABSE__URL"), "the typo is named: {t}");
    assert!(!t.contains("hunter2-secret"), "a secret leaked: {t}");
    assert!(t.contains("vigil:***@db/vigil"), "{t}");
}

#[test]
fn migrate_runs_twice_on_sqlite_and_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = vigil(dir.path(), &["migrate"], NO_ENV);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(dir.path().join("data/vigil.db").exists());
}

#[test]
fn migrate_runs_twice_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(vigil_testkit::db::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = vigil(dir.path(), &["migrate"], &[("VIGIL_DATABASE__URL", &t.url)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    drop(t);
}

/// `vigil check-config` in a folder holding `config.toml` = `body`, with `env`.
fn check(body: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), body).unwrap();
    let out = vigil(dir.path(), &["check-config"], env);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// With it, an empty config passes every check (the tests below break one thing each).
const SECRET: (&str, &str) = support::JWT_SECRET;

/// A bad config: file body, variables, the key the error names, what it says.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn check_config_rejects_every_config_that_cannot_start() {
    let cases: &[Case<'_>] = &[
        ("", &[], "`auth.jwt_secret`", "is required"),
        (
            "",
            &[("VIGIL_AUTH__JWT_SECRET", "short")],
            "`auth.jwt_secret` (environment variable VIGIL_AUTH__JWT_SECRET)",
            "at least 32 bytes",
        ),
        (
            "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            &[SECRET],
            "`http.trusted_proxies` (file config.toml)",
            "prefix length must be 0 to 32",
        ),
        (
            "[http]\ntrust_forwarded_for = true\n",
            &[SECRET],
            "`http.trust_forwarded_for`",
            "replaced by http.trusted_proxies",
        ),
        (
            "[http]\ntls_cert = \"not a certificate\"\ntls_key = \"x\"\n",
            &[SECRET],
            "`http.tls_cert`",
            "no certificate found",
        ),
        (
            "[auth.lockout]\nbase_lock_ms = 1000\nmax_lock_ms = 10\n",
            &[SECRET],
            "`auth.lockout.max_lock_ms` (file config.toml)",
            "at least base_lock_ms",
        ),
        (
            "[auth.oidc]\nissuer = \"https://acme.okta.com/oauth2/default\"\njwks_url = \"https://acme.okta.com/oauth2/default/v1/keys\"\nclient_id = \"0oaweb\"\nredirect_url = \"https://vigil.example/api/v1/auth/oidc/callback\"\n",
            &[SECRET],
            "`auth.oidc.client_secret`",
            "required with auth.oidc.client_id",
        ),
        (
            "[auth.oidc]\nissuer = \"https://acme.okta.com/oauth2/default\"\njwks_url = \"https://acme.okta.com/oauth2/default/v1/keys\"\nclient_id = \"0oaweb\"\nclient_secret = \"s\"\nredirect_url = \"https://vigil.example/callback\"\n",
            &[SECRET],
            "`auth.oidc.redirect_url` (file config.toml)",
            "/api/v1/auth/oidc/callback",
        ),
        (
            "[auth.oidc]\nissuer = \"acme.okta.com\"\n",
            &[SECRET],
            "`auth.oidc.issuer` (file config.toml)",
            "issuer's URL",
        ),
        (
            "[schedules.okta_fetch]\ncron = \"every minute\"\nqueue = \"okta_fetch\"\n",
            &[SECRET],
            "`schedules.okta_fetch.cron` (file config.toml)",
            "invalid cron expression `every minute`",
        ),
        (
            "[redis]\nurl = \"127.0.0.1:6379\"\n",
            &[SECRET],
            "`redis.url` (file config.toml)",
            "not a Redis URL",
        ),
        (
            "[okta]\nevent_hook_secret = \"short\"\n",
            &[SECRET],
            "`okta.event_hook_secret` (file config.toml)",
            "shorter than 16 characters",
        ),
        (
            "[okta]\nevent_hook_secret = \"0123456789abcdef-long\"\nevent_hook_header = \"X Bad\"\n",
            &[SECRET],
            "`okta.event_hook_header` (file config.toml)",
            "not an HTTP header name",
        ),
        (
            "[okta]\nenabled = true\ndomain = \"https://acme.okta.com\"\nauth = \"ssws\"\napi_token = \"x\"\nmax_clock_skew_seconds = 0\n",
            &[SECRET],
            "`okta.max_clock_skew_seconds` (file config.toml)",
            "out of range",
        ),
        (
            "[redis]\nmode = \"cluster\"\n",
            &[SECRET],
            "`redis.nodes`",
            "needs at least one node",
        ),
        (
            "[redis]\nmode = \"sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\n",
            &[SECRET],
            "`redis.master_name`",
            "master's name",
        ),
        (
            "[redis]\nurl = \"rediss://cache:6380/0\"\nca = \"not a certificate\"\n",
            &[SECRET],
            "`redis.ca`",
            "no PEM certificate",
        ),
        (
            "[redis]\nurl = \"redis+sentinel://h1:26379\"\n",
            &[SECRET],
            "`redis.url`",
            "needs the master name",
        ),
        (
            "[database]\nurl = \"nosuchdb://nowhere\"\n",
            &[SECRET],
            "`database.url` (file config.toml)",
            "not a database URL",
        ),
        (
            "[log]\nlevel = \"inf0,,==\"\n",
            &[SECRET],
            "`log.level` (file config.toml)",
            "is not a directive",
        ),
        (
            "[http]\nlisten = \"8080\"\n",
            &[SECRET],
            "`http.listen` (file config.toml)",
            "not HOST:PORT",
        ),
        (
            "[smtp]\nfrom = \"not a mailbox\"\n",
            &[SECRET],
            "`smtp`",
            "not a mailbox",
        ),
    ];
    for (body, env, key, why) in cases {
        let (code, _, stderr) = check(body, env);
        assert_eq!(code, Some(2), "{body} {env:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not named for {body} {env:?}: {stderr}"));
        assert!(line.contains(why), "{line}");
    }
    let (code, _, stderr) = check("", &[SECRET]);
    assert_eq!(code, Some(0), "the baseline is valid: {stderr}");
}

#[test]
fn a_typo_is_an_unknown_key_with_the_nearest_valid_one() {
    let (code, _, stderr) = check("[database]\nulr = \"sqlite://x.db\"\n", &[SECRET]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "unknown key `database.ulr` in file config.toml; did you mean `database.url`?"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid value"), "{stderr}");
}

#[test]
fn the_printed_configuration_is_toml_that_loads_back() {
    let policies = "[escalation]\nwebhook_secret = \"hunter2-webhook\"\n[[escalation.policies]]\n\
                    name = \"soc\"\nseverities = [\"high\"]\nlevels = [{ after_seconds = 60, \
                    emails = [\"soc@example.com\"] }]\n";
    let (code, stdout, stderr) = check(policies, &[SECRET]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("hunter2"), "a secret leaked: {stdout}");
    assert!(
        !stdout.contains("0123456789abcdef"),
        "a secret leaked: {stdout}"
    );
    assert!(stdout.contains("[[escalation.policies]]"), "{stdout}");
    // Paste it back: it loads, and prints the same again.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), &stdout).unwrap();
    let again = vigil(dir.path(), &["check-config"], &[SECRET]);
    let t = text(&again);
    assert!(
        !t.contains("unknown key") && !t.contains("configuration error"),
        "{t}"
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).replace(&dir.path().display().to_string(), ""),
        stdout,
        "round trip"
    );
}
