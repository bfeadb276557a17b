//! Reading a field of an Okta event by its JSON path, the way Okta documents it.
//!
//! A path is dotted keys (`client.ipAddress`, `debugContext.debugData.factor`). Arrays are
//! searched, not indexed: `target.alternateId` yields the `alternateId` of every target, and
//! a selector picks targets of one type, `target[type=User].alternateId` (Okta: "search for
//! a given type rather than the array location"). A field can therefore have several values;
//! conditions hold when any value matches (negative ones when none does).
//!
//! Real events are untidy, so lookups are forgiving: a key is matched exactly first, then
//! ignoring case; JSON `null`, a missing key and the string `"null"` (what Okta puts in
//! `client.zone`) all mean "absent"; booleans and numbers are read as their text, so
//! `isProxy = true` matches `true` and `"true"` alike.

use serde_json::Value;

/// One step of a parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `key[field=value]`: the elements of array `key` whose `field` equals `value`.
    Select {
        key: String,
        field: String,
        value: String,
    },
}

/// A parsed field path, e.g. `target[type=User].alternateId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    steps: Vec<Step>,
}

impl FieldPath {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.trim().is_empty() {
            return Err("a field path cannot be empty".to_owned());
        }
        let mut steps = Vec::new();
        for part in split_path(text)? {
            if let Some(open) = part.find('[') {
                let key = &part[..open];
                let inner = part[open + 1..]
                    .strip_suffix(']')
                    .ok_or_else(|| format!("`{part}`: a selector must end with `]`"))?;
                let (field, value) = inner
                    .split_once('=')
                    .ok_or_else(|| format!("`{part}`: a selector reads `[field=value]`"))?;
                if key.is_empty() || field.trim().is_empty() || value.trim().is_empty() {
                    return Err(format!("`{part}`: a selector reads `key[field=value]`"));
                }
                steps.push(Step::Select {
                    key: key.to_owned(),
                    field: field.trim().to_owned(),
                    value: value.trim().to_owned(),
                });
            } else if part.is_empty() {
                return Err(format!("`{text}` has an empty step"));
            } else {
                steps.push(Step::Key(part.to_owned()));
            }
        }
        Ok(FieldPath {
            text: text.to_owned(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value at this path in `event`, as text (absent values are skipped).
    pub fn values(&self, event: &Value) -> Vec<String> {
        let mut current: Vec<&Value> = vec![event];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                for item in flatten(value) {
                    match step {
                        Step::Key(key) => next.extend(get_key(item, key)),
                        Step::Select { key, field, value } => {
                            if let Some(list) = get_key(item, key) {
                                next.extend(flatten(list).into_iter().filter(|el| {
                                    get_key(el, field)
                                        .and_then(as_text)
                                        .is_some_and(|t| t.eq_ignore_ascii_case(value))
                                }));
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
            .into_iter()
            .flat_map(flatten)
            .filter_map(as_text)
            .collect()
    }

    /// The first value at this path, if any.
    pub fn first(&self, event: &Value) -> Option<String> {
        self.values(event).into_iter().next()
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits on dots outside `[...]` (a selector value may contain dots).
fn split_path(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("`{text}` has unbalanced brackets"));
        }
    }
    if depth != 0 {
        return Err(format!("`{text}` has unbalanced brackets"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// Arrays stand for their elements; anything else for itself.
fn flatten(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// `object[key]`, exact first, then ignoring ASCII case.
pub fn get_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The text of a scalar; `None` for null, `"null"`, objects and arrays.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.is_empty() || s.eq_ignore_ascii_case("null") => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(path: &str, event: &Value) -> Vec<String> {
        FieldPath::parse(path).unwrap().values(event)
    }

    #[test]
    fn nested_keys_and_forgiving_lookups() {
        let e = json!({"client": {"ipAddress": "1.2.3.4", "zone": "null"},
                       "SecurityContext": {"isProxy": "True", "asNumber": 7018},
                       "debugContext": {"debugData": {"factor": "OKTA_VERIFY_PUSH"}}});
        assert_eq!(values("client.ipAddress", &e), ["1.2.3.4"]);
        assert_eq!(values("client.ipaddress", &e), ["1.2.3.4"]);
        assert_eq!(values("securityContext.isProxy", &e), ["True"]);
        assert_eq!(values("securityContext.asNumber", &e), ["7018"]);
        assert_eq!(
            values("debugContext.debugData.factor", &e),
            ["OKTA_VERIFY_PUSH"]
        );
        assert!(values("client.zone", &e).is_empty(), "\"null\" is absent");
        assert!(values("client.device", &e).is_empty());
        assert!(values("outcome.result", &e).is_empty());
    }

    #[test]
    fn arrays_are_searched_and_selected_by_type() {
        let e = json!({"target": [
            {"type": "AuthenticatorEnrollment", "displayName": "Password"},
            {"type": "AppInstance", "displayName": "Okta Dashboard"},
            {"type": "User", "alternateId": "a@b.c", "id": "00u1"}]});
        assert_eq!(
            values("target.displayName", &e),
            ["Password", "Okta Dashboard"]
        );
        assert_eq!(
            values("target[type=AppInstance].displayName", &e),
            ["Okta Dashboard"]
        );
        assert_eq!(values("target[type=user].id", &e), ["00u1"]);
        assert!(values("target[type=Group].id", &e).is_empty());
        assert!(values("target.missing", &json!({"target": null})).is_empty());
    }

    #[test]
    fn bad_paths_are_explained() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").unwrap_err().contains("empty step"));
        assert!(FieldPath::parse("target[type=User").is_err());
        assert!(FieldPath::parse("target[type].id").is_err());
        assert_eq!(
            FieldPath::parse("target[displayName=a.b].id")
                .unwrap()
                .values(&json!({"target": [{"displayName": "a.b", "id": "x"}]})),
            ["x"]
        );
    }
}
