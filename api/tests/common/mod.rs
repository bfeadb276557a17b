//! A vigil API in-process over real services: a temp SQLite database, the shared Redis under
//! a unique key prefix, HS256 tokens (or RS256/ES256 from `tests/keys/`).
#![allow(dead_code)]

use poem::Response;
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use prometheus::Registry;
use secrecy::SecretString;
use serde_json::Value;
use vigil_api::auth::password;
use vigil_api::{ApiSettings, ApiState, JwtAlgorithm};
use vigil_jobs::Job as _;
use vigil_queue::{Engine, EngineSettings, QueuesSettings, RedisSettings, SchedulesSettings};
use vigil_store::users::{self, UserRole};
use vigil_testkit::db::TestDb;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("test key")
}

/// Settings for tests: HS256, generous rate limits, no user cache.
pub fn settings() -> ApiSettings {
    let mut s = ApiSettings::default();
    s.auth.jwt_secret = Some(SecretString::from(SECRET));
    s.auth.user_cache_seconds = 0;
    s.rate_limit.anonymous_per_minute = 10_000;
    s.rate_limit.authenticated_per_minute = 10_000;
    s.http.max_body_bytes = 64 * 1024;
    s
}

pub fn rs256(s: &mut ApiSettings) {
    s.auth.algorithm = JwtAlgorithm::RS256;
    s.auth.private_key = Some(SecretString::from(key("rsa_private.pem")));
    s.auth.public_key = Some(key("rsa_public.pem"));
}

pub fn es256(s: &mut ApiSettings) {
    s.auth.algorithm = JwtAlgorithm::ES256;
    s.auth.private_key = Some(SecretString::from(key("ec_private.pem")));
    s.auth.public_key = Some(key("ec_public.pem"));
}

pub struct TestApp {
    pub client: TestClient<BoxEndpoint<'static, Response>>,
    pub state: ApiState,
    pub engine: Engine,
    pub prefix: String,
    pub db: TestDb,
    pub registry: Registry,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }

    /// The error code of an error body (and checks the shape).
    #[track_caller]
    pub fn code(&self) -> &str {
        assert!(
            self.body["message"].is_string(),
            "error shape: {}",
            self.text
        );
        assert!(
            self.body["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "error shape: {}",
            self.text
        );
        self.body["error"].as_str().expect("error code")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn engine(prefix: &str) -> Engine {
    let redis = RedisSettings {
        url: vigil_testkit::redis::shared_url(),
        prefix: prefix.to_owned(),
        ..RedisSettings::default()
    };
    Engine::connect(&redis, EngineSettings::default(), QueuesSettings::default())
        .await
        .expect("Redis must run on 127.0.0.1:6379 for tests")
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut ApiSettings)) -> TestApp {
        let prefix = vigil_testkit::redis::unique_prefix("api");
        let db = TestDb::sqlite().await;
        Self::on(prefix, db, f).await
    }

    /// An app on an existing prefix and database (a second instance).
    pub async fn on(prefix: String, db: TestDb, f: impl FnOnce(&mut ApiSettings)) -> TestApp {
        let mut s = settings();
        f(&mut s);
        let engine = engine(&prefix).await;
        let registry = Registry::new();
        let state = ApiState::new(
            engine.clone(),
            db.db.clone(),
            s,
            SchedulesSettings::default(),
            registry.clone(),
        )
        .expect("api state");
        TestApp {
            client: TestClient::new(vigil_api::app(state.clone())),
            state,
            engine,
            prefix,
            db,
            registry,
        }
    }

    pub async fn add_user(&self, name: &str, role: UserRole) {
        let hash = password::hash(PASSWORD).unwrap();
        users::create(&self.db.db, name, &hash, role).await.unwrap();
    }

    /// Adds `name` with `role` and signs in through the API; returns the access token.
    pub async fn login(&self, name: &str, role: UserRole) -> String {
        self.add_user(name, role).await;
        let a = self
            .call(
                Method::POST,
                "/api/v1/auth/token",
                None,
                Some(serde_json::json!({"username": name, "password": PASSWORD})),
            )
            .await;
        a.expect(200);
        a.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", UserRole::Admin).await
    }

    pub async fn analyst(&self) -> String {
        self.login("analyst", UserRole::Analyst).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, path);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.body_json(&b);
        }
        Self::answer(req.send().await).await
    }

    pub async fn answer(resp: poem::test::TestResponse) -> Answer {
        let status = resp.0.status();
        let headers = resp.0.headers().clone();
        let text = resp.0.into_body().into_string().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// The payloads of the audit jobs queued so far (no audit writer runs in these tests).
    pub async fn audited(&self) -> Vec<Value> {
        self.engine
            .list(&vigil_queue::JobFilter {
                queue: Some(vigil_jobs::AuditJob::QUEUE),
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .jobs
            .into_iter()
            .map(|j| j.payload)
            .collect()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }
}

/// The app served on a real socket (127.0.0.1, port 0) until dropped.
pub struct Served {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestApp {
    /// Serves this app over TCP, so requests come from real source addresses.
    pub async fn serve(&self) -> Served {
        let mut listening = vigil_api::bind("127.0.0.1:0").await.expect("bind");
        let mut scheme = "http";
        if let Some(config) = self.state.settings().http.tls_config().expect("TLS config") {
            listening = listening.with_tls(config);
            scheme = "https";
        }
        let base = format!("{scheme}://{}", listening.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = self.state.clone();
        tokio::spawn(async move {
            let _ = listening
                .run(state, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Served {
            base,
            stop: Some(stop),
        }
    }
}

/// An HTTP client whose connections come from `source` (any 127.0.0.0/8 address works on
/// Linux loopback), to act as many different clients.
pub fn client_from(source: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().expect("source address"))
        .build()
        .expect("client")
}

impl Drop for TestApp {
    /// Deletes this test's keys from the shared Redis.
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let Ok(client) = redis::Client::open(vigil_testkit::redis::shared_url()) else {
            return;
        };
        if let Ok(mut conn) = client.get_connection() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}
