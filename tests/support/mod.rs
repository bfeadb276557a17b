//! Helpers shared by the process-level tests: a real `vigil` process with an isolated
//! SQLite database, Redis key prefix and port, users added through the CLI.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::BufRead;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_testkit::redis::{shared_url, unique_prefix};

pub const PASSWORD: &str = "correct-horse-battery-staple";

/// `vigil ARGS` run in `dir` with exactly the `VIGIL_*` variables in `env` (the test
/// runner's own `VIGIL_*` variables are removed, so a developer's shell cannot leak in).
pub fn command<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    dir: &Path,
    args: &[&str],
    env: &[(K, V)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("VIGIL_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// No extra environment, for [`vigil`] and [`command`].
pub const NO_ENV: &[(&str, &str)] = &[];

/// A JWT signing secret long enough for the API, so `check-config` passes on it.
pub const JWT_SECRET: (&str, &str) = (
    "VIGIL_AUTH__JWT_SECRET",
    "0123456789abcdef0123456789abcdef-long-enough",
);

/// Only [`JWT_SECRET`].
pub const WITH_SECRET: &[(&str, &str)] = &[JWT_SECRET];

/// Runs `vigil ARGS` to completion (see [`command`]).
pub fn vigil<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    dir: &Path,
    args: &[&str],
    env: &[(K, V)],
) -> Output {
    command(dir, args, env).output().expect("run vigil")
}

/// Everything a command printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Settings that poll the fake Okta org at `domain` with SSWS `token` (rate limits off).
pub fn okta_settings<'a>(domain: &'a str, token: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("VIGIL_OKTA__ENABLED", "true"),
        ("VIGIL_OKTA__DOMAIN", domain),
        ("VIGIL_OKTA__AUTH", "ssws"),
        ("VIGIL_OKTA__API_TOKEN", token),
        ("VIGIL_RATE_LIMIT__ENABLED", "false"),
    ]
}

/// One isolated vigil deployment: its folder, environment, port and Redis prefix.
///
/// The HTTP port is the one the first started server bound (it listens on port 0 and logs
/// its address, so no two tests can race for a port); later starts reuse it, so the base
/// URL stays the same across restarts.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    port: Mutex<Option<u16>>,
    pub prefix: String,
}

impl Deployment {
    /// A deployment sending mail to `smtp_port`, with extra `VIGIL_*` settings.
    pub fn new(smtp_port: u16, extra: &[(&str, &str)]) -> Deployment {
        // The tests' reqwest clients need rustls's provider, as vigil itself does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique_prefix("proc");
        std::fs::write(
            dir.path().join("jwt"),
            "0123456789abcdef0123456789abcdef0123456789",
        )
        .unwrap();
        let mut env: Vec<(String, String)> = [
            (
                "VIGIL_DATABASE__URL",
                format!("sqlite://{}/vigil.db", dir.path().display()),
            ),
            ("VIGIL_REDIS__URL", shared_url()),
            ("VIGIL_REDIS__PREFIX", prefix.clone()),
            (
                "VIGIL_AUTH__JWT_SECRET_FILE",
                dir.path().join("jwt").display().to_string(),
            ),
            ("VIGIL_SMTP__HOST", "127.0.0.1".to_owned()),
            ("VIGIL_SMTP__PORT", smtp_port.to_string()),
            ("VIGIL_SMTP__TLS", "none".to_owned()),
            ("VIGIL_LOG__FORMAT", "json".to_owned()),
            // Each worker's probes on a port of its own (see `Daemon::listen_url`).
            ("VIGIL_WORKER__LISTEN", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Deployment {
            dir,
            env,
            port: Mutex::new(None),
            prefix,
        }
    }

    /// The HTTP port: the one a started server bound (see the type's docs).
    ///
    /// # Panics
    /// Before any server of this deployment started.
    pub fn port(&self) -> u16 {
        self.port
            .lock()
            .unwrap()
            .expect("no vigil server of this deployment has started yet")
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Chooses the HTTP port before the first start, for the few tests that must know the
    /// URL beforehand (an OIDC redirect URL registered with the provider). The port is
    /// found free and released, so another process could take it first: prefer letting the
    /// server pick its port.
    pub fn choose_port_now(&self) -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        *self.port.lock().unwrap() = Some(port);
        port
    }

    /// The environment of a new process: `http.listen` is the deployment's port once known,
    /// port 0 before (unless the test set `VIGIL_HTTP__LISTEN` itself).
    fn process_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if !env.iter().any(|(k, _)| k == "VIGIL_HTTP__LISTEN") {
            let port = self.port.lock().unwrap().unwrap_or(0);
            env.push(("VIGIL_HTTP__LISTEN".into(), format!("127.0.0.1:{port}")));
        }
        env
    }

    /// `vigil ARGS` in this deployment's folder and environment.
    pub fn command(&self, args: &[&str]) -> Command {
        command(self.dir.path(), args, &self.process_env())
    }

    /// Sets (or replaces) one `VIGIL_*` variable.
    pub fn set(&mut self, key: &str, value: &str) {
        self.unset(key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Removes one `VIGIL_*` variable.
    pub fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Runs `vigil ARGS` to its end (it must end within 60 s): exit status and stderr.
    pub async fn run_to_exit(&self, args: &[&str]) -> (ExitStatus, String) {
        let daemon = self.spawn(args);
        let status = daemon.wait_exit(Duration::from_secs(60)).await;
        (status, daemon.logs())
    }

    /// Starts `vigil ARGS` without waiting for anything; stderr is collected.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        self.spawn_with(args, &[])
    }

    /// [`Deployment::spawn`] with extra variables for this process only.
    pub fn spawn_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Daemon {
        let mut child = self
            .command(args)
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Daemon {
            child: Mutex::new(child),
            logs,
        }
    }

    /// Adds a user through `vigil user add` (password on stdin).
    pub fn add_user(&self, name: &str, role: &str) {
        let out = self.user(&["add", name, "--role", role], PASSWORD);
        assert!(
            out.status.success(),
            "vigil user add failed: {}",
            text(&out)
        );
    }

    /// Runs `vigil user ARGS` with `password` on stdin.
    pub fn user(&self, args: &[&str], password: &str) -> Output {
        let mut all = vec!["user"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    }

    /// Starts `vigil SUBCOMMAND` and waits until `/health` answers (for API roles).
    pub async fn start(&self, subcommand: &str) -> Daemon {
        let daemon = self.spawn(&[subcommand]);
        if subcommand != "worker" {
            if self.port.lock().unwrap().is_none() {
                let url = daemon.listen_url().await;
                let port = url.rsplit(':').next().and_then(|p| p.parse().ok());
                *self.port.lock().unwrap() = Some(port.expect("a port in the listen line"));
            }
            wait_healthy(&self.base(), &daemon, subcommand).await;
        }
        daemon
    }

    /// An access token for `name`.
    pub async fn token(&self, name: &str) -> String {
        let (status, tokens) = self.sign_in(name, PASSWORD).await;
        assert_eq!(status, 200, "{tokens}");
        tokens["access_token"].as_str().expect("a token").to_owned()
    }

    /// `POST /api/v1/auth/token`: the status and the answer.
    pub async fn sign_in(&self, name: &str, password: &str) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/token", self.base()))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Deletes this deployment's Redis keys.
    pub async fn clean_redis(&self) {
        let mut conn = redis::Client::open(shared_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Polls `{base}/health` until it answers 2xx (60 s at most; fails early if `daemon` exits).
pub async fn wait_healthy(base: &str, daemon: &Daemon, what: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vigil {what} never answered {base}/health; its log:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running vigil process (stderr collected), killed on drop.
pub struct Daemon {
    child: Mutex<Child>,
    logs: Arc<Mutex<String>>,
}

impl Daemon {
    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Polls the log until a line contains `needle` (or `within` passes: the test fails).
    pub async fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with `{needle}`:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The base URL the process logged (`listening on http://HOST:PORT`), polled for 60 s:
    /// a process told to listen on port 0 reports the port it got.
    pub async fn listen_url(&self) -> String {
        self.wait_for_log("listening on http://", Duration::from_secs(60))
            .await;
        let logs = self.logs();
        let at = logs.find("listening on http://").unwrap() + "listening on ".len();
        logs[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect()
    }

    /// Sends `signal` (e.g. `TERM`, `INT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.lock().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Polls until the process exits (or `within` passes: the test fails).
    pub async fn wait_exit(&self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.lock().unwrap().try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "vigil did not exit within {within:?}; its log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(40)).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `GET {base}{path}` with the bearer token; the JSON body.
pub async fn get_json(base: &str, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST {base}{path}` with the bearer token and a JSON body; the status and JSON answer.
pub async fn post_json(base: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /api/v1/audit-logs{query}` (newest 100 records) until every `(action, target
/// id part)` in `want` is there (or 15 s pass: the test fails with what was found).
pub async fn wait_for_audit(base: &str, token: &str, query: &str, want: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sep = if query.is_empty() { "?" } else { "&" };
        let page = get_json(
            base,
            token,
            &format!("/api/v1/audit-logs{query}{sep}page_size=100"),
        )
        .await;
        let records = page["results"].as_array().cloned().unwrap_or_default();
        let has = |(action, target): &(&str, &str)| {
            records.iter().any(|r| {
                r["action"] == *action
                    && r["target_id"].as_str().is_some_and(|t| t.contains(target))
            })
        };
        if want.iter().all(has) {
            return;
        }
        let found: Vec<(&Value, &Value)> = records
            .iter()
            .map(|r| (&r["action"], &r["target_id"]))
            .collect();
        assert!(
            Instant::now() < deadline,
            "audit trail lacks some of {want:?}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `GET /api/v1/jobs/{id}` until its status is `want` (or 30 s pass); returns the job.
pub async fn wait_status(base: &str, token: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = get_json(base, token, &format!("/api/v1/jobs/{id}")).await;
        if j["status"] == want || Instant::now() > deadline {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
