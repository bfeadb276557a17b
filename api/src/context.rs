//! The request pipeline around every route, in order:
//!
//! 1. a request id (a sane incoming `X-Request-Id`, else a new one) and a tracing span
//!    carrying it, so every log line of the request names it;
//! 2. the body limit (`http.max_body_bytes`, 413);
//! 3. the rate limit (identity from the bearer token, else the client IP; 429);
//! 4. the route;
//! 5. on the way out: every non-2xx body reshaped into [`ErrorBody`] (poem's own parse and
//!    routing errors included), security headers, `X-Request-Id`, `X-RateLimit-*`, the HTTP
//!    metrics and one log line.

use std::collections::HashMap;
use std::time::Instant;

use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Instrument;

use crate::auth::Identified;
use crate::error::{ErrorBody, code_for_status};
use crate::proxy::TrustedProxies;
use crate::ratelimit::{Caller, Decision};
use crate::state::ApiState;

/// The id of the current request (request data, for handlers and audit records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The client's IP address as the pipeline determined it (request data, for handlers'
/// audit records and per-IP limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// An incoming request id is kept when it is 1 to 128 characters of `[A-Za-z0-9._:-]`.
fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Wraps the routes with the pipeline.
pub struct Pipeline<E> {
    inner: E,
    state: ApiState,
    /// operationId -> OpenAPI path template (`/api/v1/jobs/{id}`), the metrics' route label.
    templates: HashMap<String, String>,
    proxies: TrustedProxies,
    /// Send `Strict-Transport-Security` (the listener speaks TLS).
    hsts: bool,
}

impl<E> Pipeline<E> {
    /// `spec` is the OpenAPI document (JSON), read for the route templates.
    pub fn new(inner: E, state: ApiState, spec: &str) -> Self {
        // Checked at startup (`ApiState::new`, check-config); an error here cannot happen.
        let proxies =
            TrustedProxies::parse(&state.settings().http.trusted_proxies).unwrap_or_default();
        let hsts = state.settings().http.tls();
        Self {
            inner,
            state,
            templates: route_templates(spec),
            proxies,
            hsts,
        }
    }
}

/// Maps every operationId of an OpenAPI document to its path template.
fn route_templates(spec: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, ops) in paths {
            for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                    out.insert(id.to_owned(), path.clone());
                }
            }
        }
    }
    out
}

impl<E: Endpoint> Endpoint for Pipeline<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let started = Instant::now();
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span =
            tracing::info_span!("http", request_id = %request_id, method = %method, path = %path);
        async move {
            req.set_data(RequestId(request_id.clone()));
            req.set_data(self.state.clone());
            req.set_data(self.state.auth_handle());
            let (mut resp, limit) = self.handle(req, &path).await;
            let route = resp
                .data::<poem_openapi::OperationId>()
                .and_then(|op| self.templates.get(op.0).cloned())
                .or_else(|| resp.data::<poem::PathPattern>().map(|p| p.0.to_string()))
                .unwrap_or_else(|| "unmatched".to_owned());
            if !resp.status().is_success() && !resp.status().is_redirection() {
                resp = reshape_error(resp, &request_id).await;
            }
            finish_headers(&mut resp, &request_id, &path, limit);
            if self.hsts {
                resp.headers_mut().insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                );
            }
            let status = resp.status().as_u16();
            let elapsed = started.elapsed().as_secs_f64();
            self.state
                .metrics()
                .observe(method.as_str(), &route, status, elapsed);
            if status >= 500 {
                tracing::warn!(status, ms = elapsed * 1000.0, "request failed");
            } else {
                tracing::debug!(status, ms = elapsed * 1000.0, "request done");
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

impl<E: Endpoint> Pipeline<E> {
    async fn handle(&self, mut req: Request, path: &str) -> (Response, Option<Decision>) {
        let max = self.state.settings().http.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return (too_large(max), None);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            match req.take_body().into_bytes_limit(max).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => return (too_large(max), None),
                Err(e) => return (poem::Error::from(e).into_response(), None),
            }
        }

        let ip = self.client_ip(&req);
        req.set_data(ClientIp(ip.clone()));
        let mut decision = None;
        if let Some(group) = self.state.limiter().group_of(path) {
            let caller = self.caller(&mut req, ip).await;
            let read = req.method() == Method::GET || req.method() == Method::HEAD;
            // A limiter that cannot reach Redis quickly lets the request through at once
            // (the route itself then answers, or fails with its own bounded timeout).
            let checked = tokio::time::timeout(
                crate::ratelimit::LOOKUP_TIMEOUT,
                self.state.limiter().check(group, &caller, read),
            )
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within the lookup timeout",
                )))
            });
            match checked {
                Ok(d) if !d.allowed => {
                    let mut resp = Response::builder()
                        .status(StatusCode::TOO_MANY_REQUESTS)
                        .content_type("application/json")
                        .body(error_json(
                            "rate_limited",
                            &format!(
                                "rate limit of {} requests per minute exceeded; retry in {} s",
                                d.limit, d.reset_secs
                            ),
                            "",
                        ));
                    if let Ok(v) = HeaderValue::from_str(&d.reset_secs.to_string()) {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    return (resp, Some(d));
                }
                Ok(d) => decision = Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter unavailable; request let through")
                }
            }
        }

        let resp = match self.inner.call(req).await {
            Ok(out) => out.into_response(),
            Err(e) => e.into_response(),
        };
        (resp, decision)
    }

    /// The caller the rate limit counts: the token's user (or API key) when it verifies, else
    /// the IP.
    async fn caller(&self, req: &mut Request, ip: String) -> Caller {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| {
                req.headers()
                    .get(crate::auth::API_KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
            })
            .map(|t| t.trim().to_owned());
        if let Some(token) = token {
            let result = self.state.auth().identify(&token).await;
            let caller = result.as_ref().ok().map(|p| match &p.api_key {
                Some(k) => Caller::Key {
                    id: k.id.clone(),
                    per_minute: k.rate_per_minute,
                },
                None => Caller::User(p.username.clone()),
            });
            req.set_data(Identified(token, result));
            if let Some(caller) = caller {
                return caller;
            }
        }
        Caller::Anonymous(ip)
    }

    fn client_ip(&self, req: &Request) -> String {
        match req.remote_addr().as_socket_addr() {
            Some(peer) => self.proxies.client_ip(peer.ip(), req.headers()).to_string(),
            None => "unknown".to_owned(),
        }
    }
}

fn too_large(max: usize) -> Response {
    Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .content_type("application/json")
        .body(error_json(
            "payload_too_large",
            &format!("the request body is larger than {max} bytes"),
            "",
        ))
}

fn error_json(code: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({"error": code, "message": message, "request_id": request_id}).to_string()
}

/// Gives any error response the one error shape, with the request id.
async fn reshape_error(resp: Response, request_id: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    let status = parts.status;
    let bytes = body.into_bytes().await.unwrap_or_default();
    let parsed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(|v| v.get("error").is_some_and(|e| e.is_string()))
        .filter(|v| v.get("message").is_some_and(|m| m.is_string()));
    let shaped = match parsed {
        // Already our shape (ApiError, or /ready's body with its checks): add the id.
        Some(mut v) => {
            v["request_id"] = serde_json::Value::String(request_id.to_owned());
            v
        }
        None => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let message = if status.is_server_error() {
                tracing::error!(status = status.as_u16(), detail = %text, "internal error");
                "internal error; see the server logs".to_owned()
            } else if status == StatusCode::UNAUTHORIZED
                && (text.is_empty() || text.contains("authorization error"))
            {
                "a valid bearer token is required (Authorization: Bearer <token>)".to_owned()
            } else if status == StatusCode::BAD_REQUEST && !text.is_empty() {
                // poem-openapi's parse errors, reworded (no Rust type names).
                crate::error::humanize(&text)
            } else if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_lowercase()
            } else {
                text
            };
            serde_json::to_value(ErrorBody {
                error: code_for_status(status).to_owned(),
                message,
                request_id: request_id.to_owned(),
                outcome: None,
            })
            .unwrap_or_default()
        }
    };
    let json = serde_json::to_string(&shaped).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, json.into())
}

fn finish_headers(resp: &mut Response, request_id: &str, path: &str, limit: Option<Decision>) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(HeaderName::from_static(REQUEST_ID), v);
    }
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    let docs = path == "/docs" || path.starts_with("/docs/");
    let dashboard = path == "/dashboard" || path.starts_with("/dashboard/");
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(if docs {
            DOCS_CSP
        } else if dashboard {
            crate::dashboard::DASHBOARD_CSP
        } else {
            API_CSP
        }),
    );
    if !docs {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(d) = limit {
        for (name, value) in [
            ("x-ratelimit-limit", d.limit),
            ("x-ratelimit-remaining", d.remaining),
            ("x-ratelimit-reset", d.reset_secs),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(sane_request_id("abc-123_x.y:z"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("<script>"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }
}
