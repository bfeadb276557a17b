//! The job dashboard: four static files embedded in the binary (no CDN, no build step),
//! served at `/dashboard`; `/` redirects there. The page signs in with the token API and
//! reads the same JSON routes every client uses, so it needs no server-side state and an
//! analyst's page shows no admin buttons (and the API refuses their actions anyway).

use poem::http::StatusCode;
use poem::web::{Path, Redirect};
use poem::{Response, Route, get, handler};

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
const CHARTS_JS: &str = include_str!("../assets/dashboard/charts.js");

/// The Content-Security-Policy of dashboard pages: only vigil's own scripts, styles and API.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

fn asset(body: &'static str, content_type: &str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header("Cache-Control", "no-cache")
        .body(body)
}

#[handler]
fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

#[handler]
fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

#[handler]
fn charts_js() -> Response {
    asset(CHARTS_JS, "text/javascript; charset=utf-8")
}

#[handler]
fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /dashboard/jobs/{id}` → the job page of the dashboard (`/dashboard/#/jobs/{id}`);
/// an id that is not a job id opens the dashboard.
#[handler]
fn job_page(Path(id): Path<String>) -> Redirect {
    let sane = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match sane {
        true => Redirect::see_other(format!("/dashboard/#/jobs/{id}")),
        false => Redirect::see_other("/dashboard/"),
    }
}

/// `GET /` → `/dashboard`.
pub fn root_redirect() -> Redirect {
    Redirect::see_other("/dashboard")
}

/// The routes to nest at `/dashboard`.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/app.js", get(app_js))
        .at("/app.css", get(app_css))
        .at("/charts.js", get(charts_js))
        .at("/jobs/:id", get(job_page))
}
