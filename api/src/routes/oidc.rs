//! `/api/v1/auth/oidc`: the dashboard's "Sign in with Okta" (OIDC authorization code + PKCE),
//! on when `auth.oidc.client_id` is set.
//!
//! 1. `GET /api/v1/auth/oidc/login` starts a sign-in ([`crate::auth::sso`]): 302 to the
//!    issuer's authorization endpoint, and a `vigil_oidc_state` cookie (HttpOnly, SameSite=Lax)
//!    binding the sign-in to this browser.
//! 2. The issuer sends the browser to `GET /api/v1/auth/oidc/callback?code&state`: the state
//!    must be the cookie's and unused; the code is redeemed with the PKCE verifier; the ID
//!    token must be the issuer's, for vigil's client, with this sign-in's nonce, and its
//!    groups must map to a role (`admin_values` / `analyst_values`). The user is then a vigil
//!    user (created on first sign-in without a password, role updated at every sign-in; a
//!    local user of the same name is not taken over) with an ordinary vigil session
//!    (refresh rotation, logout, revocation). 303 to `/dashboard/#sso=<code>`.
//! 3. The dashboard trades that one-time code (60 s) at `POST /api/v1/auth/oidc/exchange`
//!    for the tokens, so they never appear in a URL.
//!
//! Every outcome is audited (`auth.login` with `method: oidc`, or `auth.login_failed` with
//! the reason); refusals are the usual JSON errors.

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Object, OpenApi};
use subtle::ConstantTimeEq;
use vigil_store::users::{self, SSO_ONLY, User};

use crate::auth::jwt::TokenError;
use crate::auth::oidc::ExternalIdentity;
use crate::auth::sso::{PENDING_TTL, SsoClient, SsoError};
use crate::context::{ClientIp, RequestId};
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::auth::{TokenPair, audit_auth, start_session};
use crate::state::ApiState;

/// The cookie binding a sign-in to the browser that started it.
pub const STATE_COOKIE: &str = "vigil_oidc_state";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";
/// The audit actor of a failed sign-in before the user is known.
const UNIDENTIFIED: &str = "oidc:unidentified";

/// The single sign-on routes.
pub struct OidcApi;

/// Whether single sign-on is offered.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SsoInfo {
    /// True when `auth.oidc.client_id` is configured.
    pub enabled: bool,
    /// Where the browser goes to sign in.
    pub login_url: Option<String>,
}

/// The one-time code of a finished sign-in.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct ExchangeRequest {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub code: String,
}

crate::routes::models::example!(
    ExchangeRequest,
    serde_json::json!({"code": "the code the sign-in page received"})
);

/// The tokens of a single sign-on, with the vigil user name it maps to.
#[derive(Debug, Clone, Object)]
pub struct SsoTokens {
    /// The vigil user (the issuer's `username_claim`).
    pub username: String,
    #[oai(flatten)]
    pub tokens: TokenPair,
}

/// Where the browser goes next.
#[derive(Debug, ApiResponse)]
pub enum Redirect {
    /// To the identity provider (login) or back to the dashboard (callback).
    #[oai(status = 302)]
    Found(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] String,
    ),
    /// Back to the dashboard, which picks up the tokens with the code in the fragment.
    #[oai(status = 303)]
    SeeOther(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] String,
    ),
}

fn sso(state: &ApiState) -> ApiResult<&SsoClient> {
    state.sso().ok_or_else(|| {
        ApiError::not_found("single sign-on is not configured (auth.oidc.client_id)")
    })
}

fn cookie(client: &SsoClient, value: &str, max_age: u64) -> String {
    let secure = if client.secure() { "; Secure" } else { "" };
    format!(
        "{STATE_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    )
}

fn cookie_state(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == STATE_COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn unavailable(e: SsoError) -> ApiError {
    match e {
        SsoError::Unavailable(m) => ApiError::unavailable(m),
        SsoError::Refused(_) => ApiError::unauthorized(e.to_string()),
    }
}

/// A refused sign-in: audited (`auth.login_failed`) and answered with `error`.
async fn refuse(
    state: &ApiState,
    user: &str,
    rid: &str,
    ip: &ClientIp,
    reason: &str,
    error: ApiError,
) -> ApiError {
    tracing::info!(reason, "single sign-on refused");
    audit_auth(
        state,
        user,
        "auth.login_failed",
        rid,
        serde_json::json!({"method": "oidc", "reason": reason}),
        ip,
    )
    .await;
    error
}

/// The vigil user of a verified identity: created on first sign-in, its role kept in step
/// with the groups. Returns the refusal reason and error otherwise.
async fn provision(
    state: &ApiState,
    id: &ExternalIdentity,
) -> Result<User, (&'static str, ApiError)> {
    let db = state.db();
    if users::validate_username(&id.username).is_err() {
        return Err((
            "invalid user name",
            ApiError::forbidden(
                "the identity provider's user name is not a valid vigil user name \
                 (auth.oidc.username_claim)",
            ),
        ));
    }
    let found = users::credentials(db, &id.username)
        .await
        .map_err(|e| ("database", ApiError::from(e)))?;
    let user = match found {
        None => match users::create(db, &id.username, SSO_ONLY, id.role).await {
            Ok(user) => user,
            // Created meanwhile by a concurrent sign-in: use it.
            Err(_) => users::find(db, &id.username)
                .await
                .map_err(|e| ("database", ApiError::from(e)))?
                .ok_or(("database", ApiError::internal(&"user vanished")))?,
        },
        Some(c) if c.password_hash != SSO_ONLY => {
            return Err((
                "local user of the same name",
                ApiError::conflict(
                    "a local vigil user has this name; single sign-on does not take over \
                     local accounts (sign in with the password, or have an admin rename it)",
                ),
            ));
        }
        Some(c) => c.user,
    };
    if user.disabled {
        return Err((
            "user disabled",
            ApiError::forbidden("this user is disabled in vigil"),
        ));
    }
    if user.role != id.role {
        users::change(db, &user.username, users::Change::Role(id.role))
            .await
            .map_err(|e| ("database", ApiError::from(e)))?;
        state.auth().forget(&user.username);
    }
    Ok(User {
        role: id.role,
        ..user
    })
}

#[OpenApi(tag = "Tags::Auth")]
impl OidcApi {
    /// Whether the dashboard offers "Sign in with Okta" (no token needed).
    #[oai(path = "/api/v1/auth/oidc", method = "get", operation_id = "sso_info")]
    async fn info(&self, state: Data<&ApiState>) -> Json<SsoInfo> {
        let enabled = state.sso().is_some();
        Json(SsoInfo {
            enabled,
            login_url: enabled.then(|| format!("{COOKIE_PATH}/login")),
        })
    }

    /// Start a single sign-on: redirects to the identity provider (browser navigation).
    #[oai(
        path = "/api/v1/auth/oidc/login",
        method = "get",
        operation_id = "sso_login"
    )]
    async fn login(&self, state: Data<&ApiState>) -> ApiResult<Redirect> {
        let client = sso(&state)?;
        let (sso_state, url) = client.begin().await.map_err(unavailable)?;
        Ok(Redirect::Found(
            url,
            cookie(client, &sso_state, PENDING_TTL.as_secs()),
        ))
    }

    /// Where the identity provider sends the browser back; finishes the sign-in.
    #[oai(
        path = "/api/v1/auth/oidc/callback",
        method = "get",
        operation_id = "sso_callback"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn callback(
        &self,
        req: &Request,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        ip: Data<&ClientIp>,
        #[oai(validator(max_length = 2048))] code: Query<Option<String>>,
        #[oai(name = "state", validator(max_length = 200))] sso_state: Query<Option<String>>,
        #[oai(validator(max_length = 200))] error: Query<Option<String>>,
    ) -> ApiResult<Redirect> {
        let client = sso(&state)?;
        let (rid, ip): (&str, &ClientIp) = (&rid.0.0, ip.0);
        let fail =
            |reason: &'static str, e: ApiError| refuse(&state, UNIDENTIFIED, rid, ip, reason, e);
        if let Some(error) = error.0 {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Err(fail(
                "identity provider error",
                ApiError::unauthorized(format!(
                    "the identity provider did not sign you in ({code})"
                )),
            )
            .await);
        }
        let (Some(code), Some(sso_state)) = (code.0, sso_state.0) else {
            return Err(ApiError::bad_request(
                "the callback needs `code` and `state` (start at /api/v1/auth/oidc/login)",
            ));
        };
        let same_browser =
            cookie_state(req).is_some_and(|c| bool::from(c.as_bytes().ct_eq(sso_state.as_bytes())));
        if !same_browser {
            return Err(fail(
                "state mismatch",
                ApiError::unauthorized(
                    "this sign-in was not started in this browser (state mismatch); start again",
                ),
            )
            .await);
        }
        let Some(pending) = client.take_pending(&sso_state).await.map_err(unavailable)? else {
            return Err(fail(
                "unknown state",
                ApiError::unauthorized(
                    "unknown, expired or already used sign-in (state); start again",
                ),
            )
            .await);
        };
        let id_token = match client.redeem(&code, &pending).await {
            Ok(t) => t,
            Err(e @ SsoError::Refused(_)) => {
                return Err(fail("code refused", ApiError::unauthorized(e.to_string())).await);
            }
            Err(e) => return Err(unavailable(e)),
        };
        let leeway = state.settings().auth.leeway_seconds;
        let verified = match state.auth().oidc() {
            Some(v) => v.verify_id_token(&id_token, &pending.nonce, leeway).await,
            None => return Err(ApiError::internal(&"auth.oidc verifier missing")),
        };
        let id = match verified {
            Ok(id) => id,
            Err(TokenError::NoRole) => {
                return Err(fail(
                    "no role",
                    ApiError::forbidden(
                        "your groups at the identity provider grant no vigil role \
                         (auth.oidc.admin_values / analyst_values)",
                    ),
                )
                .await);
            }
            Err(e) => {
                return Err(fail(
                    "invalid ID token",
                    ApiError::unauthorized(format!("the ID token was refused: {e}")),
                )
                .await);
            }
        };
        let user = match provision(&state, &id).await {
            Ok(user) => user,
            Err((reason, e)) => return Err(refuse(&state, &id.username, rid, ip, reason, e).await),
        };
        let tokens = start_session(&state, &user, "oidc", rid, ip).await?;
        let answer = SsoTokens {
            username: user.username,
            tokens,
        };
        let handoff = client
            .hand_off(&answer.to_json().unwrap_or_default())
            .await
            .map_err(unavailable)?;
        Ok(Redirect::SeeOther(
            format!("/dashboard/#sso={handoff}"),
            cookie(client, "", 0),
        ))
    }

    /// Trade the one-time code of a finished sign-in for its tokens (the dashboard does this).
    #[oai(
        path = "/api/v1/auth/oidc/exchange",
        method = "post",
        operation_id = "sso_exchange"
    )]
    async fn exchange(
        &self,
        state: Data<&ApiState>,
        body: Json<ExchangeRequest>,
    ) -> ApiResult<Json<SsoTokens>> {
        let client = sso(&state)?;
        let found = client
            .take_handoff(&body.0.code)
            .await
            .map_err(unavailable)?;
        found
            .and_then(|v| SsoTokens::parse_from_json(Some(v)).ok())
            .map(Json)
            .ok_or_else(|| ApiError::unauthorized("unknown, expired or already used sign-in code"))
    }
}
