//! A rule as data ([`RuleDef`], what `builtin.toml` and config.toml hold) and compiled
//! ([`Rule`], paths parsed and checked, ready to match events).
//!
//! ```toml
//! [[rule]]
//! id = "okta_brute_force_ip"
//! title = "Brute force from one IP"
//! severity = "high"                      # low | medium | high | critical
//! group_by = ["client.ipAddress"]        # the alert's grouping key (and the window's);
//!                                        # "vigil.org" is the event's Okta org
//! match = [                              # alternatives: any clause matching is a match
//!   { event_types = ["user.session.start"],
//!     conditions = [{ field = "outcome.result", equals = "FAILURE" }] },
//! ]
//! threshold = { window_seconds = 3600, count = 20 }   # optional
//! ```
//!
//! Conditions take one operator each: `equals`, `not_equals`, `any_of`, `none_of`,
//! `contains`, `not_contains`, `starts_with`, `exists`, `not_equals_field` (another field
//! path: no value of this field is a value of that one) or `in_ip_list` (a file of
//! addresses and CIDR networks, re-read when it changes). Comparisons ignore ASCII case.
//! A positive operator holds when any value of the field matches; a negative one when none
//! does (so `not_equals` holds on a missing field).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field::FieldPath;
use crate::iplist::IpList;
use crate::sigma::detection::Expr;
use crate::sigma::info::SigmaInfo;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Stable id: lower-case letters, digits and `_` (it appears in env var names).
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Alternatives; the event matches when any of them does.
    #[serde(rename = "match")]
    pub matches: Vec<ClauseDef>,
    /// Fields whose values make the grouping key of alerts and threshold windows.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdDef>,
    /// Raise the severity when these conditions also hold (first match wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity_when: Vec<SeverityWhenDef>,
    /// A repeat within this many seconds updates the open alert (default: the threshold
    /// window, else one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_seconds: Option<u64>,
    /// Fire only when another threshold rule's window for the same grouping key holds
    /// enough events just before this one (a sequence: e.g. push bombing, then a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AfterDef>,
    /// A stateful session rule: fire when a session or device is seen again within its
    /// lifetime from a different network and a different client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionDef>,
}

/// `session = { keys = [...], lifetime_seconds = 43200, network = [...], client = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDef {
    /// Fields that identify a session or a device; each is tracked on its own.
    pub keys: Vec<String>,
    pub lifetime_seconds: u64,
    /// A change of any of these (both values known) is a different network.
    pub network: Vec<String>,
    /// A change of any of these (both values known) is a different client.
    pub client: Vec<String>,
}

/// A compiled [`SessionDef`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub keys: Vec<FieldPath>,
    pub lifetime_seconds: u64,
    pub network: Vec<FieldPath>,
    pub client: Vec<FieldPath>,
}

/// `after = { rule = "okta_mfa_push_bombing", count = 5, within_seconds = 1200 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterDef {
    pub rule: String,
    pub count: u64,
    pub within_seconds: u64,
}

fn yes() -> bool {
    true
}

/// One alternative of a rule's match: event types (exact, or a prefix ending in `*`) and
/// conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClauseDef {
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionDef>,
}

/// A test on one field; exactly one operator is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionDef {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_of: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// Another field's path: holds when no value of `field` is one of its values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals_field: Option<String>,
    /// A file of IP addresses and CIDR networks, one a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_ip_list: Option<String>,
}

/// When a rule fires: enough matching events with the same grouping key within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdDef {
    pub window_seconds: u64,
    /// At least this many matching events (default 1).
    #[serde(default = "one")]
    pub count: u64,
    /// Every one of these fields has at least `min` distinct values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distinct: Vec<DistinctDef>,
    /// At least one of these holds (ignored when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distinct_any: Vec<DistinctDef>,
    /// Events per distinct value of `field`, on average, within `[min, max]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_value: Option<PerValueDef>,
    /// The first and last event are at least this far apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_spread_seconds: u64,
}

fn one() -> u64 {
    1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctDef {
    pub field: String,
    pub min: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerValueDef {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityWhenDef {
    pub severity: Severity,
    pub conditions: Vec<ConditionDef>,
}

/// A rule that cannot be used, worded for the operator: which rule, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: {key}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub key: String,
    pub message: String,
}

/// The operator of a compiled condition.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    AnyOf(Vec<String>),
    NoneOf(Vec<String>),
    Contains(String),
    NotContains(String),
    StartsWith(String),
    Exists(bool),
    NotEqualsField(FieldPath),
    InIpList(Arc<IpList>),
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    field: FieldPath,
    op: Op,
}

impl Condition {
    fn compile(def: &ConditionDef, err: &dyn Fn(&str) -> String) -> Result<Condition, String> {
        let field = FieldPath::parse(&def.field).map_err(|e| err(&e))?;
        let mut ops = Vec::new();
        if let Some(v) = &def.equals {
            ops.push(Op::Equals(
                scalar(v).map_err(|e| err(&format!("equals: {e}")))?,
            ));
        }
        if let Some(v) = &def.not_equals {
            ops.push(Op::NotEquals(
                scalar(v).map_err(|e| err(&format!("not_equals: {e}")))?,
            ));
        }
        if let Some(v) = &def.any_of {
            ops.push(Op::AnyOf(
                scalars(v).map_err(|e| err(&format!("any_of: {e}")))?,
            ));
        }
        if let Some(v) = &def.none_of {
            ops.push(Op::NoneOf(
                scalars(v).map_err(|e| err(&format!("none_of: {e}")))?,
            ));
        }
        if let Some(v) = &def.contains {
            ops.push(Op::Contains(v.to_ascii_lowercase()));
        }
        if let Some(v) = &def.not_contains {
            ops.push(Op::NotContains(v.to_ascii_lowercase()));
        }
        if let Some(v) = &def.starts_with {
            ops.push(Op::StartsWith(v.to_ascii_lowercase()));
        }
        if let Some(v) = def.exists {
            ops.push(Op::Exists(v));
        }
        if let Some(other) = &def.not_equals_field {
            ops.push(Op::NotEqualsField(
                FieldPath::parse(other).map_err(|e| err(&format!("not_equals_field: {e}")))?,
            ));
        }
        if let Some(path) = &def.in_ip_list {
            ops.push(Op::InIpList(Arc::new(
                IpList::load(std::path::Path::new(path))
                    .map_err(|e| err(&format!("in_ip_list: {e}")))?,
            )));
        }
        match ops.len() {
            1 => Ok(Condition {
                field,
                op: ops.remove(0),
            }),
            0 => Err(err(
                "needs one operator: equals, not_equals, any_of, none_of, contains, not_contains, starts_with, exists, not_equals_field or in_ip_list",
            )),
            _ => Err(err("takes exactly one operator")),
        }
    }

    /// Whether the condition holds on `event`.
    pub fn holds(&self, event: &Value) -> bool {
        let values = self.field.values(event);
        let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(&v.to_ascii_lowercase()));
        match &self.op {
            Op::Equals(x) => any(&|v| v == x),
            Op::NotEquals(x) => !any(&|v| v == x),
            Op::AnyOf(xs) => any(&|v| xs.iter().any(|x| x == v)),
            Op::NoneOf(xs) => !any(&|v| xs.iter().any(|x| x == v)),
            Op::Contains(x) => any(&|v| v.contains(x.as_str())),
            Op::NotContains(x) => !any(&|v| v.contains(x.as_str())),
            Op::StartsWith(x) => any(&|v| v.starts_with(x.as_str())),
            Op::Exists(want) => values.is_empty() != *want,
            Op::NotEqualsField(other) => {
                let others: Vec<String> = other
                    .values(event)
                    .iter()
                    .map(|v| v.to_ascii_lowercase())
                    .collect();
                !any(&|v| others.iter().any(|o| o == v))
            }
            Op::InIpList(list) => values.iter().any(|v| list.contains(v)),
        }
    }
}

/// The lower-cased text of a TOML/JSON scalar.
fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.to_ascii_lowercase()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("must be a string, a number or a boolean".to_owned()),
    }
}

fn scalars(vs: &[Value]) -> Result<Vec<String>, String> {
    if vs.is_empty() {
        return Err("must list at least one value".to_owned());
    }
    vs.iter().map(scalar).collect()
}

/// A compiled clause.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    /// Lower-case; a trailing `*` matches any suffix.
    event_types: Vec<String>,
    conditions: Vec<Condition>,
}

impl Clause {
    fn matches(&self, event_type: &str, event: &Value) -> bool {
        let type_ok = self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => event_type.starts_with(prefix),
                    None => event_type == pattern,
                });
        type_ok && self.conditions.iter().all(|c| c.holds(event))
    }
}

/// A compiled threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub window_seconds: u64,
    pub count: u64,
    pub distinct: Vec<(FieldPath, u64)>,
    pub distinct_any: Vec<(FieldPath, u64)>,
    pub per_value: Option<(FieldPath, Option<f64>, Option<f64>)>,
    pub min_spread_seconds: u64,
    /// The fields whose values the window keeps (those above, once each), in a fixed order.
    pub tracked: Vec<FieldPath>,
}

/// Where a rule comes from (what `vigil rules list` shows).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RuleSource {
    #[default]
    Builtin,
    /// `[[rules.custom]]` in config.
    Custom,
    /// A Sigma rule file.
    Sigma(Box<SigmaInfo>),
}

impl RuleSource {
    /// `built-in`, `config` or the Sigma file.
    pub fn label(&self) -> String {
        match self {
            RuleSource::Builtin => "built-in".to_owned(),
            RuleSource::Custom => "config".to_owned(),
            RuleSource::Sigma(info) => info.file.display().to_string(),
        }
    }
}

/// A rule ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub group_by: Vec<FieldPath>,
    pub threshold: Option<Threshold>,
    pub dedup_window_seconds: u64,
    /// Checked by the rule set (it needs the other rule): see [`AfterDef`].
    pub after: Option<AfterDef>,
    pub session: Option<SessionSpec>,
    clauses: Vec<Clause>,
    severity_when: Vec<(Severity, Vec<Condition>)>,
    /// The definition it was compiled from (what `vigil rules list` prints).
    pub def: RuleDef,
    pub source: RuleSource,
    /// A Sigma rule's detection, matched instead of `clauses`.
    sigma: Option<Expr>,
}

/// The dedup window of a rule without a threshold or an explicit one.
pub const DEFAULT_DEDUP_WINDOW_SECONDS: u64 = 3600;
/// The longest threshold window accepted (one week).
const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;

impl Rule {
    /// Checks and compiles `def`; every problem names the rule and the key.
    pub fn compile(def: &RuleDef) -> Result<Rule, RuleError> {
        Rule::compile_with(def, None)
    }

    /// Checks and compiles `def` with a Sigma detection (see `SigmaRule::compile`).
    pub(crate) fn compile_with(def: &RuleDef, sigma: Option<Expr>) -> Result<Rule, RuleError> {
        let id_ok = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || (sigma.is_some() && c == '-')
        };
        let fail = |key: &str, message: &str| RuleError {
            rule: if def.id.is_empty() {
                "<no id>".to_owned()
            } else {
                def.id.clone()
            },
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if def.id.is_empty() || def.id.len() > 100 || !def.id.chars().all(id_ok) {
            return Err(fail(
                "id",
                "use 1-100 lower-case letters, digits and `_` (e.g. okta_brute_force_ip)",
            ));
        }
        if def.title.trim().is_empty() {
            return Err(fail("title", "cannot be empty"));
        }
        if def.matches.is_empty() && sigma.is_none() {
            return Err(fail("match", "needs at least one clause"));
        }
        let mut clauses = Vec::new();
        for (i, c) in def.matches.iter().enumerate() {
            if c.event_types.is_empty() && c.conditions.is_empty() {
                return Err(fail(
                    &format!("match[{i}]"),
                    "needs event_types or conditions (an empty clause would match every event)",
                ));
            }
            let mut conditions = Vec::new();
            for (j, cd) in c.conditions.iter().enumerate() {
                let key = format!("match[{i}].conditions[{j}]");
                conditions
                    .push(Condition::compile(cd, &|m| m.to_owned()).map_err(|m| fail(&key, &m))?);
            }
            for t in &c.event_types {
                let body = t.strip_suffix('*').unwrap_or(t);
                if t.trim().is_empty() || body.contains('*') {
                    return Err(fail(
                        &format!("match[{i}].event_types"),
                        &format!("`{t}`: write a type or a prefix ending in `*`"),
                    ));
                }
            }
            clauses.push(Clause {
                event_types: c
                    .event_types
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
                conditions,
            });
        }
        let group_by = def
            .group_by
            .iter()
            .map(|g| FieldPath::parse(g).map_err(|m| fail("group_by", &m)))
            .collect::<Result<Vec<_>, _>>()?;
        let threshold = match &def.threshold {
            None => None,
            Some(t) => Some(compile_threshold(t, &group_by, &fail)?),
        };
        let mut severity_when = Vec::new();
        for (i, s) in def.severity_when.iter().enumerate() {
            let key = format!("severity_when[{i}]");
            if s.conditions.is_empty() {
                return Err(fail(&key, "needs conditions"));
            }
            let conditions = s
                .conditions
                .iter()
                .map(|cd| Condition::compile(cd, &|m| m.to_owned()).map_err(|m| fail(&key, &m)))
                .collect::<Result<Vec<_>, _>>()?;
            severity_when.push((s.severity, conditions));
        }
        let dedup_window_seconds = match def.dedup_window_seconds {
            Some(0) => return Err(fail("dedup_window_seconds", "must be at least 1")),
            Some(n) => n,
            None => threshold
                .as_ref()
                .map_or(DEFAULT_DEDUP_WINDOW_SECONDS, |t| t.window_seconds),
        };
        let session = match &def.session {
            None => None,
            Some(sd) => {
                if def.threshold.is_some() || def.after.is_some() {
                    return Err(fail(
                        "session",
                        "a session rule takes no threshold or after",
                    ));
                }
                if sd.lifetime_seconds == 0 || sd.lifetime_seconds > MAX_WINDOW_SECONDS {
                    return Err(fail(
                        "session.lifetime_seconds",
                        &format!("must be between 1 and {MAX_WINDOW_SECONDS}"),
                    ));
                }
                let paths = |list: &[String], key: &str| {
                    if list.is_empty() {
                        return Err(fail(key, "needs at least one field"));
                    }
                    list.iter()
                        .map(|f| FieldPath::parse(f).map_err(|m| fail(key, &m)))
                        .collect::<Result<Vec<_>, _>>()
                };
                Some(SessionSpec {
                    keys: paths(&sd.keys, "session.keys")?,
                    lifetime_seconds: sd.lifetime_seconds,
                    network: paths(&sd.network, "session.network")?,
                    client: paths(&sd.client, "session.client")?,
                })
            }
        };
        Ok(Rule {
            session,
            id: def.id.clone(),
            title: def.title.clone(),
            description: def.description.clone(),
            severity: def.severity,
            group_by,
            threshold,
            dedup_window_seconds,
            after: def.after.clone(),
            clauses,
            severity_when,
            def: def.clone(),
            source: RuleSource::Builtin,
            sigma,
        })
    }

    /// Whether `event` (of type `event_type`, lower-case) passes the rule's match.
    pub fn matches(&self, event_type: &str, event: &Value) -> bool {
        match &self.sigma {
            Some(expr) => expr.eval(event),
            None => self.clauses.iter().any(|c| c.matches(event_type, event)),
        }
    }

    /// The severity for an alert raised on `event`.
    pub fn severity_for(&self, event: &Value) -> Severity {
        self.severity_when
            .iter()
            .find(|(_, conds)| conds.iter().all(|c| c.holds(event)))
            .map_or(self.severity, |(s, _)| (*s).max(self.severity))
    }

    /// The grouping key of `event`: the `group_by` values joined by `|`. `None` when a
    /// threshold rule cannot group it (a field is missing), so it is not counted.
    pub fn group_key(&self, event: &Value) -> Option<String> {
        let mut parts = Vec::new();
        for field in &self.group_by {
            match field.first(event) {
                Some(v) => parts.push(v),
                None if self.threshold.is_some() => return None,
                None => parts.push(String::new()),
            }
        }
        Some(parts.join("|"))
    }
}

fn compile_threshold(
    t: &ThresholdDef,
    group_by: &[FieldPath],
    fail: &dyn Fn(&str, &str) -> RuleError,
) -> Result<Threshold, RuleError> {
    if t.window_seconds == 0 || t.window_seconds > MAX_WINDOW_SECONDS {
        return Err(fail(
            "threshold.window_seconds",
            &format!("must be between 1 and {MAX_WINDOW_SECONDS}"),
        ));
    }
    if t.count == 0 {
        return Err(fail("threshold.count", "must be at least 1"));
    }
    if group_by.is_empty() {
        return Err(fail(
            "group_by",
            "a threshold rule needs group_by (e.g. [\"client.ipAddress\"])",
        ));
    }
    let distinct = |list: &[DistinctDef], key: &str| {
        list.iter()
            .map(|d| {
                if d.min == 0 {
                    return Err(fail(key, &format!("`{}`: min must be at least 1", d.field)));
                }
                Ok((
                    FieldPath::parse(&d.field).map_err(|m| fail(key, &m))?,
                    d.min,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let per_value = match &t.per_value {
        None => None,
        Some(p) => {
            let key = "threshold.per_value";
            if p.min.is_none() && p.max.is_none() {
                return Err(fail(key, "needs min, max or both"));
            }
            if let (Some(lo), Some(hi)) = (p.min, p.max)
                && lo > hi
            {
                return Err(fail(key, "min is above max"));
            }
            Some((
                FieldPath::parse(&p.field).map_err(|m| fail(key, &m))?,
                p.min,
                p.max,
            ))
        }
    };
    if t.min_spread_seconds > t.window_seconds {
        return Err(fail(
            "threshold.min_spread_seconds",
            "cannot exceed window_seconds",
        ));
    }
    let distinct_all = distinct(&t.distinct, "threshold.distinct")?;
    let distinct_any = distinct(&t.distinct_any, "threshold.distinct_any")?;
    let mut tracked: Vec<FieldPath> = Vec::new();
    let all = distinct_all
        .iter()
        .chain(&distinct_any)
        .map(|(f, _)| f)
        .chain(per_value.as_ref().map(|(f, _, _)| f));
    for f in all {
        if !tracked.contains(f) {
            tracked.push(f.clone());
        }
    }
    Ok(Threshold {
        window_seconds: t.window_seconds,
        count: t.count,
        distinct: distinct_all,
        distinct_any,
        per_value,
        min_spread_seconds: t.min_spread_seconds,
        tracked,
    })
}
