//! The email templates (minijinja, compiled into the binary): `alert_notification`,
//! `alert_escalation` and `generic`, each as text and HTML. HTML output is auto-escaped, so
//! a variable holding `<script>` arrives as text. Variables missing from a job render as
//! their default (templates never fail on an absent optional field).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::Environment;

/// The template names a job may ask for: the email job kind's list (one source for the
/// enqueue check and the renderer).
pub fn names() -> impl Iterator<Item = &'static str> {
    vigil_jobs::EmailJob::TEMPLATES.iter().map(|(n, _)| *n)
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    let sources = [
        (
            "alert_notification.txt",
            include_str!("templates/alert_notification.txt"),
        ),
        (
            "alert_notification.html",
            include_str!("templates/alert_notification.html"),
        ),
        (
            "alert_escalation.txt",
            include_str!("templates/alert_escalation.txt"),
        ),
        (
            "alert_escalation.html",
            include_str!("templates/alert_escalation.html"),
        ),
        ("generic.txt", include_str!("templates/generic.txt")),
        ("generic.html", include_str!("templates/generic.html")),
    ];
    for (name, source) in sources {
        // The sources are fixed at compile time and covered by tests; a syntax error here
        // shows up as "unknown template" at render time, never as a panic.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "email template does not compile");
        }
    }
    env
});

/// A rendered message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub html: String,
}

/// Why a template could not be rendered (permanent: the job asks for something impossible).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown email template `{name}` (known: {known})")]
    Unknown { name: String, known: String },
    #[error("email template `{name}` failed to render: {source}")]
    Render {
        name: String,
        source: minijinja::Error,
    },
}

fn unknown(name: &str) -> TemplateError {
    TemplateError::Unknown {
        name: name.to_owned(),
        known: names().collect::<Vec<_>>().join(", "),
    }
}

/// Checks that every template compiled (for `vigil check-config` and startup): renders each
/// with no variables, so a broken template stops vigil at start instead of killing jobs.
pub fn check() -> Result<(), TemplateError> {
    for name in names() {
        render(name, "check", &BTreeMap::new())?;
    }
    Ok(())
}

/// Renders template `name` with `vars` (plus `subject`). A `url` variable is dropped unless it
/// is an `http(s)://` link, so a job cannot plant a `javascript:` link in the HTML.
pub fn render(
    name: &str,
    subject: &str,
    vars: &BTreeMap<String, serde_json::Value>,
) -> Result<Rendered, TemplateError> {
    if !names().any(|n| n == name) {
        return Err(unknown(name));
    }
    let mut ctx = vars.clone();
    if let Some(url) = ctx.get("url")
        && !url
            .as_str()
            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
    {
        ctx.remove("url");
    }
    ctx.insert(
        "subject".to_owned(),
        serde_json::Value::String(subject.to_owned()),
    );
    let value = minijinja::Value::from(minijinja::value::Serde(&ctx));
    let one = |ext: &str| -> Result<String, TemplateError> {
        let full = format!("{name}.{ext}");
        let tmpl = ENV.get_template(&full).map_err(|_| unknown(name))?;
        tmpl.render(&value).map_err(|source| TemplateError::Render {
            name: full.clone(),
            source,
        })
    };
    Ok(Rendered {
        text: one("txt")?,
        html: one("html")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_template_renders_with_and_without_variables() {
        for name in names() {
            let empty = render(name, "s", &BTreeMap::new()).unwrap();
            assert!(
                !empty.text.is_empty() && empty.html.contains("<html"),
                "{name}"
            );
        }
    }

    #[test]
    fn every_template_a_job_may_name_has_its_text_and_html() {
        let names: Vec<&str> = names().collect();
        assert_eq!(names, ["alert_notification", "alert_escalation", "generic"]);
        for name in names {
            for ext in ["txt", "html"] {
                assert!(
                    ENV.get_template(&format!("{name}.{ext}")).is_ok(),
                    "{name}.{ext}"
                );
            }
        }
    }

    #[test]
    fn html_is_escaped_and_links_must_be_http() {
        let v = vars(json!({
            "alert_id": 7, "rule": "<script>alert(1)</script>", "severity": "High",
            "url": "javascript:alert(1)", "events": [{"actor": "a&b", "ip": "1.2.3.4"}]
        }));
        let r = render("alert_notification", "s", &v).unwrap();
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("a&amp;b"));
        assert!(!r.html.contains("javascript:"));
        assert!(
            r.text.contains("<script>alert(1)</script>"),
            "text is not escaped"
        );
        assert!(r.text.contains("High alert #7"));
        assert!(matches!(
            render("nope", "s", &v),
            Err(TemplateError::Unknown { .. })
        ));
    }
}
