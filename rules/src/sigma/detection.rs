//! A Sigma `detection` compiled to a boolean expression over an Okta event.
//!
//! A selection written as a map is the AND of its fields; a field with a list of values
//! matches when any value does (every value with `|all`); a selection written as a list of
//! maps is the OR of them; a list of plain values is a keyword search over every text of
//! the event. Values compare ignoring case (unless `|cased`), with `*` and `?` wildcards
//! (`\*`, `\?`, `\\` for the characters themselves); `null` means the field is absent.
//!
//! Modifiers: `contains`, `startswith`, `endswith`, `all`, `re` (with `i`, `m`, `s`),
//! `cidr`, `exists`, `base64`, `base64offset` (with `contains`), `cased`, `gt`, `gte`, `lt`,
//! `lte`. Anything else is refused by name.

use std::net::IpAddr;

use base64::Engine as _;
use serde_json::Value;

use crate::field::FieldPath;

/// A compiled detection: what a Sigma rule's `condition` says, over its selections.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Field(FieldTest),
    /// Keyword search: a pattern matches when any text anywhere in the event does.
    Keywords(Vec<Pattern>),
}

impl Expr {
    /// Whether the expression holds on `event`.
    pub fn eval(&self, event: &Value) -> bool {
        match self {
            Expr::All(xs) => xs.iter().all(|x| x.eval(event)),
            Expr::Any(xs) => xs.iter().any(|x| x.eval(event)),
            Expr::Not(x) => !x.eval(event),
            Expr::Field(t) => t.holds(event),
            Expr::Keywords(ps) => {
                let mut texts = Vec::new();
                all_texts(event, &mut texts);
                ps.iter().any(|p| texts.iter().any(|t| p.matches(t)))
            }
        }
    }
}

/// One field of a selection, with its values and modifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTest {
    field: FieldPath,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// Any value of the field matches any (or, `all`, every) pattern.
    Values { patterns: Vec<Pattern>, all: bool },
    /// `|exists: true|false`, and `null` (absent).
    Exists(bool),
}

impl FieldTest {
    fn holds(&self, event: &Value) -> bool {
        let values = self.field.values(event);
        match &self.test {
            Test::Exists(want) => values.is_empty() != *want,
            Test::Values { patterns, all } => {
                let one = |p: &Pattern| values.iter().any(|v| p.matches(v));
                if *all {
                    patterns.iter().all(one)
                } else {
                    patterns.iter().any(one)
                }
            }
        }
    }
}

/// One value of a selection, compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Text with wildcards; `cased` false means ASCII case is ignored (the text is lower-case).
    Text {
        glob: Glob,
        cased: bool,
    },
    Regex(Re),
    Cidr(Cidr),
    Number {
        op: Cmp,
        value: f64,
    },
}

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Text { glob, cased: true } => glob.matches(value),
            Pattern::Text { glob, cased: false } => glob.matches(&value.to_ascii_lowercase()),
            Pattern::Regex(re) => re.0.is_match(value),
            Pattern::Cidr(c) => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| c.contains(ip)),
            Pattern::Number { op, value: want } => {
                value.trim().parse::<f64>().is_ok_and(|v| match op {
                    Cmp::Gt => v > *want,
                    Cmp::Gte => v >= *want,
                    Cmp::Lt => v < *want,
                    Cmp::Lte => v <= *want,
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A compiled regular expression (compared by its source).
#[derive(Debug, Clone)]
pub struct Re(regex::Regex);

impl PartialEq for Re {
    fn eq(&self, other: &Re) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `addr/bits` or a bare address; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP network (e.g. 10.0.0.0/8)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, bits })
    }

    /// The first and last address of the network, in the IPv6 space (IPv4 as
    /// `::ffff:a.b.c.d`).
    pub fn range(&self) -> (u128, u128) {
        let (base, width) = match self.net {
            IpAddr::V4(n) => (n.to_ipv6_mapped().to_bits(), 32u32),
            IpAddr::V6(n) => (n.to_bits(), 128u32),
        };
        let host_bits = width - u32::from(self.bits);
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        (base & !mask, base | mask)
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(n.to_bits()), u128::from(i.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (n.to_bits(), i.to_bits(), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// Text with `*` (any run) and `?` (one character) wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// The general case: literal runs and wildcards.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    Any,
    One,
}

impl Glob {
    /// Parses Sigma's escapes: `\*`, `\?` and `\\` are literal; other backslashes stay.
    fn parse(text: &str) -> Glob {
        let mut tokens: Vec<Token> = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                    lit.push(chars.next().unwrap_or('\\'));
                }
                '*' | '?' => {
                    if !lit.is_empty() {
                        tokens.push(Token::Text(std::mem::take(&mut lit)));
                    }
                    tokens.push(if c == '*' { Token::Any } else { Token::One });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            tokens.push(Token::Text(lit));
        }
        let text_of = |t: &Token| match t {
            Token::Text(s) => Some(s.clone()),
            _ => None,
        };
        match tokens.as_slice() {
            [] => Glob::Exact(String::new()),
            [Token::Text(s)] => Glob::Exact(s.clone()),
            [t, Token::Any] if text_of(t).is_some() => Glob::Prefix(text_of(t).unwrap_or_default()),
            [Token::Any, t] if text_of(t).is_some() => Glob::Suffix(text_of(t).unwrap_or_default()),
            [Token::Any, t, Token::Any] if text_of(t).is_some() => {
                Glob::Contains(text_of(t).unwrap_or_default())
            }
            _ => Glob::Tokens(tokens),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Glob::Exact(s) => value == s,
            Glob::Prefix(s) => value.starts_with(s.as_str()),
            Glob::Suffix(s) => value.ends_with(s.as_str()),
            Glob::Contains(s) => value.contains(s.as_str()),
            Glob::Tokens(t) => glob_match(t, value),
        }
    }
}

/// Backtracking wildcard match (only the last `*` is retried, so it stays linear-ish).
fn glob_match(tokens: &[Token], value: &str) -> bool {
    match tokens.split_first() {
        None => value.is_empty(),
        Some((Token::Text(s), rest)) => value
            .strip_prefix(s.as_str())
            .is_some_and(|v| glob_match(rest, v)),
        Some((Token::One, rest)) => {
            let mut chars = value.chars();
            chars.next().is_some() && glob_match(rest, chars.as_str())
        }
        Some((Token::Any, rest)) => {
            if rest.is_empty() {
                return true;
            }
            value
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(value.len()))
                .any(|i| glob_match(rest, &value[i..]))
        }
    }
}

/// Every scalar text in `value`, recursively (for keyword search).
fn all_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(items) => items.iter().for_each(|v| all_texts(v, out)),
        Value::Object(map) => map.values().for_each(|v| all_texts(v, out)),
        Value::Null => {}
    }
}

/// Why a selection cannot be compiled; `construct` names what (for the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionError {
    pub construct: String,
    pub message: String,
    pub unsupported: bool,
}

fn invalid(construct: &str, message: impl Into<String>) -> SelectionError {
    SelectionError {
        construct: construct.to_owned(),
        message: message.into(),
        unsupported: false,
    }
}

fn unsupported(construct: &str, message: impl Into<String>) -> SelectionError {
    SelectionError {
        construct: construct.to_owned(),
        message: message.into(),
        unsupported: true,
    }
}

/// Compiles selection `name` (its YAML value).
pub fn selection(name: &str, value: &serde_yaml::Value) -> Result<Expr, SelectionError> {
    use serde_yaml::Value as Y;
    let construct = format!("detection.{name}");
    match value {
        Y::Mapping(map) => map_selection(&construct, map),
        Y::Sequence(items) if items.is_empty() => Err(invalid(&construct, "is an empty list")),
        Y::Sequence(items) if items.iter().all(Y::is_mapping) => {
            let mut any = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Y::Mapping(map) = item {
                    any.push(map_selection(&format!("{construct}[{i}]"), map)?);
                }
            }
            Ok(Expr::Any(any))
        }
        Y::Sequence(items) => {
            let mut patterns = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let text = scalar_text(item).ok_or_else(|| {
                    invalid(
                        &format!("{construct}[{i}]"),
                        "a list mixes maps and values: write maps (fields) or values (keywords)",
                    )
                })?;
                // A keyword matches anywhere in a text: `*keyword*`.
                patterns.push(text_pattern(&format!("*{text}*"), false));
            }
            Ok(Expr::Keywords(patterns))
        }
        Y::String(_) | Y::Number(_) | Y::Bool(_) => {
            let text = scalar_text(value).unwrap_or_default();
            Ok(Expr::Keywords(vec![text_pattern(
                &format!("*{text}*"),
                false,
            )]))
        }
        _ => Err(invalid(
            &construct,
            "must be a map of fields, a list of maps or a list of keywords",
        )),
    }
}

fn map_selection(construct: &str, map: &serde_yaml::Mapping) -> Result<Expr, SelectionError> {
    if map.is_empty() {
        return Err(invalid(construct, "is an empty map"));
    }
    let mut all = Vec::new();
    for (key, value) in map {
        let key = key
            .as_str()
            .ok_or_else(|| invalid(construct, "field names must be text"))?;
        all.push(field_test(&format!("{construct}.{key}"), key, value)?);
    }
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        Expr::All(all)
    })
}

/// The modifiers vigil understands.
#[derive(Debug, Default)]
struct Modifiers {
    wrap: Option<&'static str>,
    all: bool,
    re: bool,
    re_flags: (bool, bool, bool),
    cidr: bool,
    exists: bool,
    base64: bool,
    base64offset: bool,
    cased: bool,
    cmp: Option<Cmp>,
}

fn field_test(
    construct: &str,
    key: &str,
    value: &serde_yaml::Value,
) -> Result<Expr, SelectionError> {
    use serde_yaml::Value as Y;
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(unsupported(
            construct,
            "modifiers without a field name (write `field|modifier`)",
        ));
    }
    let field = FieldPath::parse(name).map_err(|m| invalid(construct, m))?;
    let mut m = Modifiers::default();
    for modifier in parts {
        match modifier {
            "contains" => m.wrap = Some("contains"),
            "startswith" => m.wrap = Some("startswith"),
            "endswith" => m.wrap = Some("endswith"),
            "all" => m.all = true,
            "re" => m.re = true,
            "i" if m.re => m.re_flags.0 = true,
            "m" if m.re => m.re_flags.1 = true,
            "s" if m.re => m.re_flags.2 = true,
            "cidr" => m.cidr = true,
            "exists" => m.exists = true,
            "base64" => m.base64 = true,
            "base64offset" => m.base64offset = true,
            "cased" => m.cased = true,
            "gt" => m.cmp = Some(Cmp::Gt),
            "gte" => m.cmp = Some(Cmp::Gte),
            "lt" => m.cmp = Some(Cmp::Lt),
            "lte" => m.cmp = Some(Cmp::Lte),
            other => {
                return Err(unsupported(
                    construct,
                    format!(
                        "modifier `{other}` (vigil supports contains, \
                         startswith, endswith, all, re, cidr, exists, base64, base64offset, \
                         cased, gt, gte, lt, lte)"
                    ),
                ));
            }
        }
    }
    if m.base64offset && m.wrap != Some("contains") {
        return Err(invalid(construct, "`base64offset` needs `contains`"));
    }
    let kinds = [
        m.re,
        m.cidr,
        m.exists,
        m.cmp.is_some(),
        m.base64 || m.base64offset,
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds > 1 || (kinds == 1 && m.wrap.is_some() && !(m.base64 || m.base64offset)) {
        return Err(invalid(
            construct,
            "combines modifiers that cannot go together (re, cidr, exists, gt/gte/lt/lte and \
             base64 each stand alone; only base64 takes contains/startswith/endswith)",
        ));
    }
    if m.exists {
        return match value {
            Y::Bool(b) => Ok(Expr::Field(FieldTest {
                field,
                test: Test::Exists(*b),
            })),
            _ => Err(invalid(construct, "`exists` takes true or false")),
        };
    }
    let values: Vec<&Y> = match value {
        Y::Sequence(items) if items.is_empty() => {
            return Err(invalid(construct, "lists no values"));
        }
        Y::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    // `field: null` (alone) means the field is absent.
    if values.len() == 1 && values[0].is_null() && !m.all {
        return Ok(Expr::Field(FieldTest {
            field,
            test: Test::Exists(false),
        }));
    }
    let mut patterns = Vec::new();
    for v in values {
        let text = scalar_text(v)
            .ok_or_else(|| invalid(construct, "values must be text, numbers or booleans"))?;
        patterns.extend(compile_value(construct, &text, &m)?);
    }
    let all = m.all;
    // base64offset gives three encodings of one value: any of them is that value.
    if m.base64offset && all {
        return Err(invalid(construct, "`base64offset` cannot take `all`"));
    }
    Ok(Expr::Field(FieldTest {
        field,
        test: Test::Values { patterns, all },
    }))
}

fn compile_value(
    construct: &str,
    text: &str,
    m: &Modifiers,
) -> Result<Vec<Pattern>, SelectionError> {
    if m.re {
        let re = regex::RegexBuilder::new(text)
            .case_insensitive(m.re_flags.0)
            .multi_line(m.re_flags.1)
            .dot_matches_new_line(m.re_flags.2)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| invalid(construct, format!("`{text}` is not a valid regex: {e}")))?;
        return Ok(vec![Pattern::Regex(Re(re))]);
    }
    if m.cidr {
        return Ok(vec![Pattern::Cidr(
            Cidr::parse(text).map_err(|e| invalid(construct, e))?,
        )]);
    }
    if let Some(op) = m.cmp {
        let value = text
            .trim()
            .parse::<f64>()
            .map_err(|_| invalid(construct, format!("`{text}` is not a number")))?;
        return Ok(vec![Pattern::Number { op, value }]);
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let bodies: Vec<String> = if m.base64 {
        // The value as it appears base64-encoded, matched as written (case matters).
        vec![escape_glob(&engine.encode(text))]
    } else if m.base64offset {
        // The value at each of the three offsets it can take inside a longer encoded text:
        // the stable middle of each encoding.
        let (start, end) = ([0usize, 2, 3], [0usize, 3, 2]);
        (0..3)
            .map(|i| {
                let mut padded = vec![b' '; i];
                padded.extend_from_slice(text.as_bytes());
                let enc = engine.encode(&padded);
                let tail = (text.len() + i) % 3;
                let cut_end = enc.len().saturating_sub(end[tail]);
                escape_glob(enc.get(start[i]..cut_end).unwrap_or_default())
            })
            .collect()
    } else {
        vec![text.to_owned()]
    };
    let cased = m.cased || m.base64 || m.base64offset;
    Ok(bodies
        .into_iter()
        .map(|body| {
            let wrapped = match m.wrap {
                Some("contains") => format!("*{body}*"),
                Some("startswith") => format!("{body}*"),
                Some("endswith") => format!("*{body}"),
                _ => body,
            };
            text_pattern(&wrapped, cased)
        })
        .collect())
}

fn escape_glob(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('*', "\\*")
        .replace('?', "\\?")
}

fn text_pattern(text: &str, cased: bool) -> Pattern {
    let glob = if cased {
        Glob::parse(text)
    } else {
        Glob::parse(&text.to_ascii_lowercase())
    };
    Pattern::Text { glob, cased }
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_escapes() {
        let m = |p: &str, v: &str| Glob::parse(p).matches(v);
        assert!(m("abc", "abc") && !m("abc", "abcd"));
        assert!(m("ab*", "abcd") && m("*cd", "abcd") && m("*bc*", "abcd"));
        assert!(m("a*c*e", "abxxcxxe") && !m("a*c*e", "abxxcxx"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("a\\*c", "a*c") && !m("a\\*c", "abc"));
        assert!(m("a\\\\b", "a\\b") && m("a\\b", "a\\b"));
        assert!(m("*", "") && m("", ""));
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(
            Cidr::parse("192.0.2.7")
                .unwrap()
                .contains("192.0.2.7".parse().unwrap())
        );
    }
}
