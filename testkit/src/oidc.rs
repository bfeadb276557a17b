//! A local OpenID Connect provider (an Okta authorization server's sign-in side), for tests of
//! vigil's dashboard single sign-on. A real HTTP server on 127.0.0.1 with:
//! - `GET /.well-known/openid-configuration`: discovery (issuer = the base URL).
//! - `GET /keys`: the JWKS (one RSA key, `kid` [`KEY_ID`]).
//! - `GET /authorize`: checks `response_type=code`, the client id, the registered redirect
//!   URI, `openid` in `scope`, a `state`, `code_challenge_method=S256` and a challenge; then
//!   signs in whoever [`OidcProvider::sign_in_as`] chose (no login form) and redirects back
//!   with `code` and `state`.
//! - `POST /token`: `authorization_code` only; client authentication (`client_secret_basic`
//!   or `client_secret_post`), the code (single use, 5 minutes, same redirect URI) and the
//!   PKCE verifier (S256 of it must be the challenge); answers an RS256 ID token with the
//!   authorization request's `nonce`, the user's `sub`, `email`, `preferred_username` and
//!   `groups`. Refusals are OAuth JSON errors (`invalid_client`, `invalid_grant`, ...) and are
//!   recorded ([`OidcProvider::refusals`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Form, Query};
use poem::{EndpointExt, Response, Route, Server, get, handler, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `kid` of the provider's signing key.
pub const KEY_ID: &str = "testkit-oidc-1";
const KEY_PEM: &str = include_str!("../keys/oidc_rsa.pem");
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// Who the provider signs in.
#[derive(Debug, Clone)]
pub struct OidcUser {
    /// `sub`.
    pub subject: String,
    /// `email` and `preferred_username`.
    pub username: String,
    /// `groups`.
    pub groups: Vec<String>,
}

#[derive(Debug)]
struct Grant {
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
    user: OidcUser,
    issued: Instant,
    used: bool,
}

#[derive(Debug)]
struct State {
    user: OidcUser,
    codes: HashMap<String, Grant>,
    nonce_override: Option<String>,
    refusals: Vec<String>,
    id_tokens: u64,
}

struct Shared {
    base: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    key: EncodingKey,
    jwks: Value,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running provider; stopped on drop.
pub struct OidcProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(json!({"error": error, "error_description": description}).to_string())
}

fn refuse(shared: &Shared, status: StatusCode, error: &str, why: &str) -> Response {
    shared.lock().refusals.push(format!("{error}: {why}"));
    oauth_error(status, error, why)
}

#[handler]
fn discovery(Data(shared): Data<&Arc<Shared>>) -> poem::web::Json<Value> {
    let base = &shared.base;
    poem::web::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
    }))
}

#[handler]
fn keys(Data(shared): Data<&Arc<Shared>>) -> poem::web::Json<Value> {
    poem::web::Json(shared.jwks.clone())
}

#[handler]
fn authorize(
    Data(shared): Data<&Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let bad = |why: &str| refuse(shared, StatusCode::BAD_REQUEST, "invalid_request", why);
    if arg("response_type") != "code" {
        return bad("response_type must be code");
    }
    if arg("client_id") != shared.client_id {
        return refuse(
            shared,
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    if arg("redirect_uri") != shared.redirect_uri {
        return bad("redirect_uri is not registered");
    }
    if !arg("scope").split(' ').any(|s| s == "openid") {
        return bad("scope must include openid");
    }
    if arg("state").is_empty() {
        return bad("state is required");
    }
    if arg("code_challenge_method") != "S256" || arg("code_challenge").len() != 43 {
        return bad("PKCE with S256 is required");
    }
    let code = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    {
        let mut st = shared.lock();
        let user = st.user.clone();
        st.codes.insert(
            code.clone(),
            Grant {
                nonce: q.get("nonce").cloned(),
                challenge: arg("code_challenge").to_owned(),
                redirect_uri: arg("redirect_uri").to_owned(),
                user,
                issued: Instant::now(),
                used: false,
            },
        );
    }
    let mut back = reqwest::Url::parse(&shared.redirect_uri).expect("registered redirect URI");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", arg("state"));
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", back.as_str())
        .finish()
}

/// The client id and secret of a token request (Basic header, else the form).
fn client_auth(req: &poem::Request, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

#[handler]
fn token(
    req: &poem::Request,
    Data(shared): Data<&Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let arg = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if arg("grant_type") != "authorization_code" {
        return refuse(
            shared,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    match client_auth(req, &form) {
        Some((id, secret)) if id == shared.client_id && secret == shared.client_secret => {}
        _ => {
            return refuse(
                shared,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        }
    }
    let mut guard = shared.lock();
    let st = &mut *guard;
    let Some(grant) = st.codes.get_mut(arg("code")) else {
        drop(guard);
        return refuse(
            shared,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown code",
        );
    };
    let why = if grant.used {
        Some("code already redeemed")
    } else if grant.issued.elapsed() > CODE_LIFETIME {
        Some("code expired")
    } else if grant.redirect_uri != arg("redirect_uri") {
        Some("redirect_uri differs from the authorization request's")
    } else if URL_SAFE_NO_PAD.encode(Sha256::digest(arg("code_verifier").as_bytes()))
        != grant.challenge
    {
        Some("PKCE verification failed")
    } else {
        None
    };
    grant.used = true;
    if let Some(why) = why {
        drop(guard);
        return refuse(shared, StatusCode::BAD_REQUEST, "invalid_grant", why);
    }
    let user = grant.user.clone();
    let nonce = st.nonce_override.clone().or_else(|| grant.nonce.clone());
    st.id_tokens += 1;
    drop(guard);
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_owned());
    let mut claims = json!({
        "iss": shared.base, "aud": shared.client_id, "sub": user.subject,
        "email": user.username, "preferred_username": user.username,
        "groups": user.groups, "iat": now, "auth_time": now, "exp": now + 300,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = Value::String(nonce);
    }
    let id_token = jsonwebtoken::encode(&header, &claims, &shared.key).expect("sign an ID token");
    Response::builder()
        .content_type("application/json")
        .header("Cache-Control", "no-store")
        .body(
            json!({"token_type": "Bearer", "expires_in": 3600, "scope": "openid profile email groups",
                   "access_token": uuid::Uuid::new_v4().simple().to_string(), "id_token": id_token})
            .to_string(),
        )
}

impl OidcProvider {
    /// Starts a provider with one registered web app (`client_id`, `client_secret`,
    /// `redirect_uri`), signing in `alice@example.com` in `vigil-admins` until told otherwise.
    pub async fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> OidcProvider {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the OIDC provider");
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a TCP address");
        let key = EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).expect("the test RSA key");
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256)
            .expect("a JWK of the test key");
        jwk.common.key_id = Some(KEY_ID.to_owned());
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            key,
            jwks: json!({"keys": [jwk]}),
            state: Mutex::new(State {
                user: OidcUser {
                    subject: "00u1alice".to_owned(),
                    username: "alice@example.com".to_owned(),
                    groups: vec!["Everyone".to_owned(), "vigil-admins".to_owned()],
                },
                codes: HashMap::new(),
                nonce_override: None,
                refusals: Vec::new(),
                id_tokens: 0,
            }),
        });
        let app = Route::new()
            .at("/.well-known/openid-configuration", get(discovery))
            .at("/keys", get(keys))
            .at("/authorize", get(authorize))
            .at("/token", post(token))
            .data(shared.clone());
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        OidcProvider {
            shared,
            addr,
            server,
        }
    }

    /// The issuer (`auth.oidc.issuer`), e.g. `http://127.0.0.1:41234`.
    pub fn issuer(&self) -> String {
        self.shared.base.clone()
    }

    /// The JWKS URL (`auth.oidc.jwks_url`).
    pub fn jwks_url(&self) -> String {
        format!("{}/keys", self.shared.base)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next authorizations sign in this user (`sub`, user name, groups).
    pub fn sign_in_as(&self, subject: &str, username: &str, groups: &[&str]) {
        self.shared.lock().user = OidcUser {
            subject: subject.to_owned(),
            username: username.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
    }

    /// ID tokens carry this `nonce` instead of the authorization request's (`None`: honest).
    pub fn forge_nonce(&self, nonce: Option<&str>) {
        self.shared.lock().nonce_override = nonce.map(str::to_owned);
    }

    /// Every refused request so far, as `error: why`.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.lock().refusals.clone()
    }

    /// How many ID tokens were issued.
    pub fn id_tokens_issued(&self) -> u64 {
        self.shared.lock().id_tokens
    }
}
