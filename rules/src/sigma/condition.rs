//! A Sigma `condition`: `and`, `or`, `not`, parentheses, `1 of PATTERN`, `all of PATTERN`
//! (`any of` reads as `1 of`), `them` (every selection not starting with `_`), and `*`
//! wildcards in selection names. `not` binds tightest, then `and`, then `or`.
//! An aggregation (`| count() by x > 5`) is refused: vigil's thresholds take its place.

use std::collections::BTreeMap;

use super::detection::Expr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Pipe,
}

/// Why a condition cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub message: String,
    pub unsupported: bool,
}

fn bad(message: impl Into<String>) -> ConditionError {
    ConditionError {
        message: message.into(),
        unsupported: false,
    }
}

fn tokens(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        match c {
            '(' | ')' | '|' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Pipe,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Parses `text` over the compiled `selections`.
pub fn parse(text: &str, selections: &BTreeMap<String, Expr>) -> Result<Expr, ConditionError> {
    let toks = tokens(text);
    if toks.contains(&Tok::Pipe) {
        return Err(ConditionError {
            message: "aggregation (`| count() ...`): use a threshold override in \
                      [rules.sigma_override] instead"
                .to_owned(),
            unsupported: true,
        });
    }
    if toks.is_empty() {
        return Err(bad("is empty"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        selections,
    };
    let expr = p.or()?;
    if let Some(t) = p.toks.get(p.at) {
        return Err(bad(format!(
            "unexpected {} after a complete condition",
            show(t)
        )));
    }
    Ok(expr)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Open => "`(`".to_owned(),
        Tok::Close => "`)`".to_owned(),
        Tok::Pipe => "`|`".to_owned(),
    }
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    selections: &'a BTreeMap<String, Expr>,
}

impl Parser<'_> {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.and()?];
        while self.peek_word("or") {
            self.at += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Any(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.not()?];
        while self.peek_word("and") {
            self.at += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::All(items)
        })
    }

    fn not(&mut self) -> Result<Expr, ConditionError> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ConditionError> {
        let Some(tok) = self.toks.get(self.at).cloned() else {
            return Err(bad("ends where a selection was expected"));
        };
        self.at += 1;
        match tok {
            Tok::Open => {
                let inner = self.or()?;
                if self.toks.get(self.at) != Some(&Tok::Close) {
                    return Err(bad("a `(` is not closed"));
                }
                self.at += 1;
                Ok(inner)
            }
            Tok::Close | Tok::Pipe => Err(bad(format!("unexpected {}", show(&tok)))),
            Tok::Word(w) => {
                let lower = w.to_ascii_lowercase();
                if ["and", "or"].contains(&lower.as_str()) {
                    return Err(bad(format!("`{w}` where a selection was expected")));
                }
                let quantifier = match lower.as_str() {
                    "1" | "any" => Some(false),
                    "all" => Some(true),
                    _ => None,
                };
                if let Some(all) = quantifier.filter(|_| self.peek_word("of")) {
                    self.at += 1;
                    let Some(Tok::Word(pattern)) = self.toks.get(self.at).cloned() else {
                        return Err(bad(format!(
                            "`{w} of` needs a selection name, a pattern or `them`"
                        )));
                    };
                    self.at += 1;
                    let picked = self.matching(&pattern)?;
                    return Ok(if all {
                        Expr::All(picked)
                    } else {
                        Expr::Any(picked)
                    });
                }
                if lower.parse::<u64>().is_ok() && self.peek_word("of") {
                    return Err(ConditionError {
                        message: format!("`{w} of` (write `1 of` or `all of`)"),
                        unsupported: true,
                    });
                }
                if w.contains('*') {
                    return Err(bad(format!(
                        "`{w}`: a wildcard name needs `1 of` or `all of` before it"
                    )));
                }
                self.selections
                    .get(&w)
                    .cloned()
                    .ok_or_else(|| bad(format!("`{w}` is not a selection of this rule")))
            }
        }
    }

    /// The selections `pattern` names (`them`: all not starting with `_`).
    fn matching(&self, pattern: &str) -> Result<Vec<Expr>, ConditionError> {
        let picked: Vec<Expr> = self
            .selections
            .iter()
            .filter(|(name, _)| {
                if pattern.eq_ignore_ascii_case("them") {
                    !name.starts_with('_')
                } else {
                    wildcard(pattern, name)
                }
            })
            .map(|(_, e)| e.clone())
            .collect();
        if picked.is_empty() {
            return Err(bad(format!("`{pattern}` names no selection")));
        }
        Ok(picked)
    }
}

/// `sel*` / `*_x` / `a*b` over selection names (case-sensitive, as Sigma names are).
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sel(field: &str, value: &str) -> Expr {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&format!("{field}: '{value}'")).unwrap();
        super::super::detection::selection("s", &yaml).unwrap()
    }

    fn set() -> BTreeMap<String, Expr> {
        [
            ("sel_a".to_owned(), sel("a", "1")),
            ("sel_b".to_owned(), sel("b", "1")),
            ("filter".to_owned(), sel("c", "1")),
            ("_hidden".to_owned(), sel("d", "1")),
        ]
        .into()
    }

    fn holds(cond: &str, event: &Value) -> bool {
        parse(cond, &set()).unwrap().eval(event)
    }

    #[test]
    fn precedence_and_parentheses() {
        let e = json!({"a": "1", "c": "1"});
        assert!(holds("sel_a or sel_b and filter", &e));
        assert!(!holds("(sel_a or sel_b) and not filter", &e));
        assert!(holds("not filter or sel_a", &e));
        assert!(holds("NOT sel_b AND sel_a", &e));
        assert!(!holds("not not sel_b", &e));
    }

    #[test]
    fn quantifiers_wildcards_and_them() {
        assert!(holds("1 of sel_*", &json!({"b": "1"})));
        assert!(!holds("all of sel_*", &json!({"b": "1"})));
        assert!(holds("all of sel_*", &json!({"a": "1", "b": "1"})));
        assert!(holds("any of sel*", &json!({"a": "1"})));
        assert!(holds("all of them", &json!({"a": "1", "b": "1", "c": "1"})));
        assert!(
            !holds("1 of them", &json!({"d": "1"})),
            "_hidden is not in them"
        );
        assert!(holds("1 of *_b", &json!({"b": "1"})));
    }

    #[test]
    fn mistakes_and_aggregations_are_named() {
        let err = |c: &str| parse(c, &set()).unwrap_err();
        let agg = err("sel_a | count() by x > 5");
        assert!(
            agg.unsupported && agg.message.contains("aggregation"),
            "{agg:?}"
        );
        assert!(err("sel_x").message.contains("`sel_x` is not a selection"));
        assert!(err("(sel_a").message.contains("not closed"));
        assert!(err("sel_a sel_b").message.contains("unexpected `sel_b`"));
        assert!(err("1 of nope*").message.contains("names no selection"));
        assert!(err("sel_*").message.contains("needs `1 of`"));
        assert!(err("2 of sel_*").unsupported);
        assert!(err("sel_a and").message.contains("ends where"));
        assert!(err("").message.contains("empty"));
    }
}
