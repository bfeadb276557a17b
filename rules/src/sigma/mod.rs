//! Sigma detection rules, loaded natively from their YAML.
//!
//! A file may hold several YAML documents; a folder is read recursively (`*.yml`, `*.yaml`,
//! in name order). Each document that is a Sigma rule for `logsource: product: okta` becomes
//! a [`Rule`](crate::Rule) that runs like a built-in one: same evaluation, alerts, grouping
//! and escalation. A document vigil cannot run faithfully (a correlation, an aggregation,
//! an unknown modifier, another log source) is refused as a [`SigmaProblem`] naming the
//! file, the rule and the construct; the other rules of the file or folder still load.
//!
//! Mapping: `id` (lower-cased) is the rule id (the file name when there is none), `title`,
//! `description`, `level` → severity (`informational` → low; none → medium); `tags`,
//! `falsepositives`, `status`, `references` and `author` are kept for display. Alerts are
//! grouped by `actor.alternateId` unless `[rules.sigma_override."<id>"]` says otherwise.

pub mod condition;
pub mod detection;
pub mod info;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value as Y;

pub use detection::{Cidr, Expr};
pub use info::SigmaInfo;

use crate::rule::{Rule, RuleDef, RuleError, RuleSource, Severity};

/// A Sigma rule ready to be compiled into the rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaRule {
    pub def: RuleDef,
    pub expr: Expr,
    pub info: SigmaInfo,
}

impl SigmaRule {
    /// Compiles it into the rule set's form (its definition carries any config override).
    pub fn compile(&self) -> Result<Rule, RuleError> {
        let mut rule = Rule::compile_with(&self.def, Some(self.expr.clone()))?;
        rule.source = RuleSource::Sigma(Box::new(self.info.clone()));
        Ok(rule)
    }
}

/// A Sigma document that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: rule `{rule}`: {construct}: {message}", file.display())]
pub struct SigmaProblem {
    pub file: PathBuf,
    /// The rule's id, else its title, else `document N`.
    pub rule: String,
    /// What was refused: `correlation`, `detection.sel.field|windash`, `condition`, ...
    pub construct: String,
    pub message: String,
}

/// Reads every path (a file or a folder); a path that does not exist is an error (a typo
/// in config), a bad rule inside one is a problem and the rest still load.
pub fn load_paths(paths: &[PathBuf]) -> Result<(Vec<SigmaRule>, Vec<SigmaProblem>), String> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let files = files_under(path)?;
        for file in files {
            let (r, p) = load_file(&file);
            rules.extend(r);
            problems.extend(p);
        }
    }
    Ok((rules, problems))
}

/// The rule files at `path`: itself, or the YAML files under it (recursively, sorted).
fn files_under(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("`{}`: cannot read it ({e})", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("`{}`: cannot list it ({e})", dir.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every rule of one file, and the documents refused.
pub fn load_file(file: &Path) -> (Vec<SigmaRule>, Vec<SigmaProblem>) {
    let problem = |rule: &str, construct: &str, message: String| SigmaProblem {
        file: file.to_path_buf(),
        rule: rule.to_owned(),
        construct: construct.to_owned(),
        message,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return (
                Vec::new(),
                vec![problem("-", "file", format!("cannot read it: {e}"))],
            );
        }
    };
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let name = format!("document {}", i + 1);
        match serde::Deserialize::deserialize(doc) {
            Ok(Y::Null) => {}
            Ok(value) => match parse_rule(file, &name, &value) {
                Ok(r) => rules.push(r),
                Err(p) => problems.push(p),
            },
            Err(e) => {
                problems.push(problem(&name, "yaml", format!("not valid YAML: {e}")));
                // The parser cannot resume after a syntax error.
                break;
            }
        }
    }
    (rules, problems)
}

/// One YAML document → a rule, or the reason it is refused.
pub fn parse_rule(file: &Path, name: &str, doc: &Y) -> Result<SigmaRule, SigmaProblem> {
    let text = |key: &str| doc.get(key).and_then(Y::as_str).map(str::to_owned);
    let sigma_id = text("id");
    let title = text("title");
    let label = sigma_id
        .clone()
        .or_else(|| title.clone())
        .unwrap_or_else(|| name.to_owned());
    let fail = |construct: &str, message: String| SigmaProblem {
        file: file.to_path_buf(),
        rule: label.clone(),
        construct: construct.to_owned(),
        message,
    };
    let unsupported =
        |construct: &str, what: &str| fail(construct, format!("not supported: {what}"));
    let Some(map) = doc.as_mapping() else {
        return Err(fail(
            "document",
            "is not a map of rule attributes".to_owned(),
        ));
    };
    if map.contains_key("correlation") {
        return Err(unsupported(
            "correlation",
            "correlation rules (use a threshold override on the base rule instead)",
        ));
    }
    if let Some(action) = text("action") {
        return Err(unsupported(
            "action",
            &format!("rule collections (`action: {action}`): write each rule in full"),
        ));
    }
    if map.contains_key("filter") && !map.contains_key("detection") {
        return Err(unsupported("filter", "Sigma filter documents"));
    }
    let Some(title) = title else {
        return Err(fail("title", "is missing".to_owned()));
    };
    let logsource = doc
        .get("logsource")
        .ok_or_else(|| fail("logsource", "is missing".to_owned()))?;
    let product = logsource.get("product").and_then(Y::as_str);
    let service = logsource.get("service").and_then(Y::as_str);
    let okta = match product {
        Some(p) => p.eq_ignore_ascii_case("okta"),
        None => service.is_some_and(|s| s.eq_ignore_ascii_case("okta")),
    };
    if !okta {
        return Err(unsupported(
            "logsource",
            &format!(
                "product `{}`: vigil reads the Okta System Log (logsource product okta)",
                product.or(service).unwrap_or("none")
            ),
        ));
    }
    let detection = doc
        .get("detection")
        .and_then(Y::as_mapping)
        .ok_or_else(|| fail("detection", "is missing or not a map".to_owned()))?;
    if detection.contains_key("timeframe") {
        return Err(unsupported(
            "detection.timeframe",
            "aggregations over a timeframe (use a threshold override instead)",
        ));
    }
    let mut selections = BTreeMap::new();
    let mut conditions = Vec::new();
    for (key, value) in detection {
        let Some(key) = key.as_str() else {
            return Err(fail("detection", "selection names must be text".to_owned()));
        };
        if key == "condition" {
            match value {
                Y::String(s) => conditions.push(s.clone()),
                Y::Sequence(items) => {
                    for item in items {
                        let s = item.as_str().ok_or_else(|| {
                            fail("detection.condition", "must be text".to_owned())
                        })?;
                        conditions.push(s.to_owned());
                    }
                }
                _ => return Err(fail("detection.condition", "must be text".to_owned())),
            }
            continue;
        }
        let expr = detection::selection(key, value).map_err(|e| {
            if e.unsupported {
                fail(&e.construct, format!("not supported: {}", e.message))
            } else {
                fail(&e.construct, e.message)
            }
        })?;
        selections.insert(key.to_owned(), expr);
    }
    if conditions.is_empty() {
        return Err(fail("detection.condition", "is missing".to_owned()));
    }
    let mut alternatives = Vec::new();
    for c in &conditions {
        let expr = condition::parse(c, &selections).map_err(|e| {
            let message = if e.unsupported {
                format!("`{c}`: not supported: {}", e.message)
            } else {
                format!("`{c}`: {}", e.message)
            };
            fail("detection.condition", message)
        })?;
        alternatives.push(expr);
    }
    let expr = if alternatives.len() == 1 {
        alternatives.remove(0)
    } else {
        Expr::Any(alternatives)
    };
    let level = text("level");
    let severity = match level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Severity::Medium,
        Some("informational" | "low") => Severity::Low,
        Some("medium") => Severity::Medium,
        Some("high") => Severity::High,
        Some("critical") => Severity::Critical,
        Some(other) => {
            return Err(fail(
                "level",
                format!(
                    "`{other}` is not a Sigma level (informational, low, medium, high, critical)"
                ),
            ));
        }
    };
    let id = match &sigma_id {
        Some(id) if valid_id(id) => id.to_ascii_lowercase(),
        Some(id) => {
            return Err(fail(
                "id",
                format!("`{id}`: use letters, digits, `-` and `_` (a UUID), at most 100"),
            ));
        }
        None => id_from_file(file),
    };
    let list = |key: &str| -> Vec<String> {
        match doc.get(key) {
            Some(Y::Sequence(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Y::String(s) => Some(s.clone()),
                    Y::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Y::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let info = SigmaInfo {
        file: file.to_path_buf(),
        sigma_id,
        level,
        status: text("status"),
        tags: list("tags"),
        falsepositives: list("falsepositives"),
        references: list("references"),
        author: text("author"),
    };
    let def = RuleDef {
        id,
        title,
        description: text("description").unwrap_or_default().trim().to_owned(),
        severity,
        enabled: true,
        matches: Vec::new(),
        group_by: vec![DEFAULT_GROUP_BY.to_owned()],
        threshold: None,
        severity_when: Vec::new(),
        dedup_window_seconds: None,
        after: None,
        session: None,
    };
    Ok(SigmaRule { def, expr, info })
}

/// How alerts of a Sigma rule are grouped unless config says otherwise.
pub const DEFAULT_GROUP_BY: &str = "actor.alternateId";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `sigma_<file stem>` with anything but letters and digits as `_`.
fn id_from_file(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("rule")
        .to_ascii_lowercase();
    let clean: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(90)
        .collect();
    format!("sigma_{clean}")
}
