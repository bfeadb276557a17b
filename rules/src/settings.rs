//! `[rules]` in config.toml: tune or turn off built-in rules, add your own.
//!
//! ```toml
//! [rules.builtin.okta_brute_force_ip]
//! enabled = false
//! [rules.builtin.okta_repeated_lockouts]
//! threshold = { count = 5, window_seconds = 7200 }
//! [[rules.custom]]
//! id = "acme_vpn_admin"
//! title = "Admin console from the VPN range"
//! severity = "medium"
//! match = [{ event_types = ["user.session.access_admin_app"],
//!            conditions = [{ field = "client.ipAddress", starts_with = "10.8." }] }]
//! sigma = ["sigma/okta"]                 # Sigma rule files or folders
//! [rules.sigma_override."5f1c0e4a-0a51-4c3e-9a55-7d0b6a2c9e10"]
//! group_by = ["client.ipAddress"]
//! threshold = { window_seconds = 600, count = 5 }
//! [rules.behavioural.okta_swa_app_burst]  # rules over stored events (see `behaviour`)
//! distinct_apps = 8
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::behaviour::{BehaviouralRule, BehaviouralSettings};
use crate::rule::{
    DistinctDef, PerValueDef, Rule, RuleDef, RuleError, RuleSource, Severity, ThresholdDef,
};
use crate::sigma::{self, SigmaProblem};

/// The built-in rules, as shipped.
const BUILTIN_TOML: &str = include_str!("../builtin.toml");

/// `[rules]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSettings {
    /// Changes to built-in rules, by rule id.
    pub builtin: BTreeMap<String, RuleOverride>,
    /// Operators' own rules, in the built-in rules' vocabulary.
    pub custom: Vec<RuleDef>,
    /// Sigma rule files or folders (relative to the config file's folder).
    pub sigma: Vec<PathBuf>,
    /// Changes to Sigma rules, by rule id.
    pub sigma_override: BTreeMap<String, SigmaOverride>,
    /// Countries (as Okta names them: `client.geographicalContext.country`) whose sign-ins
    /// raise `okta_blocked_country`; empty turns the rule off.
    pub blocked_countries: Vec<String>,
    /// A file of IP addresses and CIDR networks (a deny list, a threat-intel feed) whose
    /// requests raise `okta_denylisted_ip`; re-read when it changes.
    pub ip_denylist: Option<PathBuf>,
    /// The behavioural rules (queries over stored events), by rule id.
    pub behavioural: BehaviouralSettings,
}

impl RulesSettings {
    /// Makes relative paths relative to `dir` (the config file's folder).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        self.sigma.iter_mut().for_each(resolve);
        self.ip_denylist.iter_mut().for_each(resolve);
        for rule in &mut self.custom {
            for clause in &mut rule.matches {
                for c in &mut clause.conditions {
                    if let Some(p) = c.in_ip_list.as_mut()
                        && Path::new(p).is_relative()
                    {
                        *p = dir.join(&*p).display().to_string();
                    }
                }
            }
        }
    }
}

/// What config.toml may change in a Sigma rule: the same as a built-in one, plus the
/// grouping, and a whole threshold (a Sigma rule has none of its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigmaOverride {
    pub enabled: Option<bool>,
    pub severity: Option<Severity>,
    pub dedup_window_seconds: Option<u64>,
    /// Fields that group alerts and threshold windows (default `actor.alternateId`).
    pub group_by: Option<Vec<String>>,
    pub threshold: Option<ThresholdDef>,
}

/// What config.toml may change in a built-in rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleOverride {
    pub enabled: Option<bool>,
    pub severity: Option<Severity>,
    pub dedup_window_seconds: Option<u64>,
    pub threshold: Option<ThresholdOverride>,
}

/// Threshold fields to replace; the others keep their built-in values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdOverride {
    pub window_seconds: Option<u64>,
    pub count: Option<u64>,
    pub min_spread_seconds: Option<u64>,
    pub distinct: Option<Vec<DistinctDef>>,
    pub distinct_any: Option<Vec<DistinctDef>>,
    pub per_value: Option<PerValueDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinFile {
    rule: Vec<RuleDef>,
}

/// The built-in rule definitions, as shipped.
pub fn builtin_defs() -> Vec<RuleDef> {
    // A broken builtin.toml fails every test that loads rules; it cannot ship.
    toml::from_str::<BuiltinFile>(BUILTIN_TOML)
        .map(|f| f.rule)
        .unwrap_or_else(|e| panic!("rules/builtin.toml is invalid: {e}"))
}

/// The rules in force: built-in ones with the overrides, then the custom ones.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The enabled behavioural rules (run on a schedule over stored events).
    behavioural: Vec<BehaviouralRule>,
    disabled: Vec<String>,
    /// Sigma rules that were not loaded, and why.
    problems: Vec<SigmaProblem>,
}

impl RuleSet {
    /// Builds and checks every rule. Errors name the rule and the key (`rules.builtin.<id>`
    /// for an override of a rule that does not exist, `rules.custom[i]` for custom ones).
    pub fn load(settings: &RulesSettings) -> Result<RuleSet, RuleError> {
        let mut defs = builtin_defs();
        defs.extend(configured_defs(settings));
        let builtin_count = defs.len();
        for (id, change) in &settings.builtin {
            let def = defs
                .iter_mut()
                .find(|d| &d.id == id)
                .ok_or_else(|| RuleError {
                    rule: id.clone(),
                    key: format!("rules.builtin.{id}"),
                    message: "there is no built-in rule with this id (see `vigil rules list`)"
                        .to_owned(),
                })?;
            apply(def, change).map_err(|message| RuleError {
                rule: id.clone(),
                key: format!("rules.builtin.{id}.threshold"),
                message,
            })?;
        }
        let (behavioural, behavioural_off) = settings.behavioural.compile()?;
        for (i, custom) in settings.custom.iter().enumerate() {
            let behavioural_id = [
                crate::behaviour::SWA_APP_BURST,
                crate::behaviour::UNUSUAL_SIGNIN_HOUR,
            ]
            .contains(&custom.id.as_str());
            if behavioural_id || defs.iter().any(|d| d.id == custom.id) {
                return Err(RuleError {
                    rule: custom.id.clone(),
                    key: format!("rules.custom[{i}].id"),
                    message: "another rule already has this id".to_owned(),
                });
            }
            defs.push(custom.clone());
        }
        let mut rules = Vec::new();
        let mut disabled = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            let mut rule = Rule::compile(def).map_err(|e| match def.id.as_str() {
                // The list comes from config: name its key.
                "okta_denylisted_ip" if settings.ip_denylist.is_some() => RuleError {
                    key: "rules.ip_denylist".to_owned(),
                    message: e.message.trim_start_matches("in_ip_list: ").to_owned(),
                    ..e
                },
                _ => e,
            })?;
            if i >= builtin_count {
                rule.source = RuleSource::Custom;
            }
            if def.enabled {
                rules.push(rule);
            } else {
                disabled.push(def.id.clone());
            }
        }
        disabled.extend(behavioural_off);
        let problems = load_sigma(settings, &mut rules, &mut disabled)?;
        for rule in &rules {
            check_after(rule, &rules)?;
        }
        Ok(RuleSet {
            rules,
            behavioural,
            disabled,
            problems,
        })
    }

    /// The Sigma rules that were refused (file, rule, construct), in load order.
    pub fn problems(&self) -> &[SigmaProblem] {
        &self.problems
    }

    /// The enabled rules, built-in first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Ids of the rules turned off in config.
    pub fn disabled(&self) -> &[String] {
        &self.disabled
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The enabled behavioural rules (queries over stored events).
    pub fn behavioural(&self) -> &[BehaviouralRule] {
        &self.behavioural
    }

    /// Whether `id` names an enabled rule of either kind.
    pub fn is_active(&self, id: &str) -> bool {
        self.get(id).is_some() || self.behavioural.iter().any(|r| r.id == id)
    }

    /// The description of enabled rule `id`, of either kind.
    pub fn description(&self, id: &str) -> Option<&str> {
        match self.get(id) {
            Some(r) => Some(r.description.as_str()),
            None => self
                .behavioural
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.description.as_str()),
        }
    }
}

/// The built-in rules that exist only when config gives them their list: blocked countries,
/// the IP deny list.
fn configured_defs(settings: &RulesSettings) -> Vec<RuleDef> {
    use crate::rule::{ClauseDef, ConditionDef};
    let mut defs = Vec::new();
    let signins = [
        "user.session.start",
        "user.authentication.*",
        "policy.evaluate_sign_on",
    ]
    .map(str::to_owned)
    .to_vec();
    if !settings.blocked_countries.is_empty() {
        defs.push(RuleDef {
            id: "okta_blocked_country".to_owned(),
            title: "Sign-in from a blocked country".to_owned(),
            description: format!(
                "A sign-in or authentication (user.session.start, user.authentication.*, \
                 policy.evaluate_sign_on) from a country in [rules] blocked_countries: {}.",
                settings.blocked_countries.join(", ")
            ),
            severity: Severity::High,
            enabled: true,
            matches: vec![ClauseDef {
                event_types: signins,
                conditions: vec![ConditionDef {
                    field: "client.geographicalContext.country".to_owned(),
                    any_of: Some(
                        settings
                            .blocked_countries
                            .iter()
                            .map(|c| serde_json::Value::from(c.as_str()))
                            .collect(),
                    ),
                    ..Default::default()
                }],
            }],
            group_by: vec!["actor.alternateId".to_owned()],
            threshold: None,
            severity_when: Vec::new(),
            dedup_window_seconds: None,
            after: None,
            session: None,
        });
    }
    if let Some(path) = &settings.ip_denylist {
        defs.push(RuleDef {
            id: "okta_denylisted_ip".to_owned(),
            title: "Request from a deny-listed IP".to_owned(),
            description: format!(
                "Any event whose client.ipAddress is in the IP deny list {} (re-read when it \
                 changes).",
                path.display()
            ),
            severity: Severity::High,
            enabled: true,
            matches: vec![ClauseDef {
                event_types: Vec::new(),
                conditions: vec![ConditionDef {
                    field: "client.ipAddress".to_owned(),
                    in_ip_list: Some(path.display().to_string()),
                    ..Default::default()
                }],
            }],
            group_by: vec!["client.ipAddress".to_owned()],
            threshold: None,
            severity_when: Vec::new(),
            dedup_window_seconds: None,
            after: None,
            session: None,
        });
    }
    defs
}

/// Loads the Sigma rules named in config beside `rules`, with their overrides. A path that
/// cannot be read and a bad override are errors (config mistakes); a rule that cannot be
/// used is a problem, reported, and the others load.
fn load_sigma(
    settings: &RulesSettings,
    rules: &mut Vec<Rule>,
    disabled: &mut Vec<String>,
) -> Result<Vec<SigmaProblem>, RuleError> {
    let mut taken: BTreeSet<String> = rules
        .iter()
        .map(|r| r.id.clone())
        .chain(disabled.iter().cloned())
        .collect();
    let mut problems = Vec::new();
    let mut overridden = BTreeSet::new();
    for (i, path) in settings.sigma.iter().enumerate() {
        let (loaded, refused) =
            sigma::load_paths(std::slice::from_ref(path)).map_err(|message| RuleError {
                rule: "sigma".to_owned(),
                key: format!("rules.sigma[{i}]"),
                message,
            })?;
        problems.extend(refused);
        for mut s in loaded {
            if !taken.insert(s.def.id.clone()) {
                problems.push(SigmaProblem {
                    file: s.info.file.clone(),
                    rule: s.def.id.clone(),
                    construct: "id".to_owned(),
                    message: "another rule already has this id".to_owned(),
                });
                continue;
            }
            if let Some(change) = settings.sigma_override.get(&s.def.id) {
                overridden.insert(s.def.id.clone());
                apply_sigma(&mut s.def, change);
                let rule = s.compile().map_err(|e| RuleError {
                    key: format!("rules.sigma_override.\"{}\" ({})", s.def.id, e.key),
                    ..e
                })?;
                if s.def.enabled {
                    rules.push(rule);
                } else {
                    disabled.push(s.def.id.clone());
                }
                continue;
            }
            match s.compile() {
                Ok(rule) => rules.push(rule),
                Err(e) => problems.push(SigmaProblem {
                    file: s.info.file.clone(),
                    rule: s.def.id.clone(),
                    construct: e.key,
                    message: e.message,
                }),
            }
        }
    }
    for id in settings.sigma_override.keys() {
        if !overridden.contains(id) {
            problems.push(SigmaProblem {
                file: PathBuf::from("config"),
                rule: id.clone(),
                construct: format!("rules.sigma_override.\"{id}\""),
                message: "no Sigma rule with this id was loaded (see `vigil rules list`)"
                    .to_owned(),
            });
        }
    }
    Ok(problems)
}

fn apply_sigma(def: &mut RuleDef, change: &SigmaOverride) {
    if let Some(on) = change.enabled {
        def.enabled = on;
    }
    if let Some(s) = change.severity {
        def.severity = s;
    }
    if let Some(w) = change.dedup_window_seconds {
        def.dedup_window_seconds = Some(w);
    }
    if let Some(g) = &change.group_by {
        def.group_by = g.clone();
    }
    if let Some(t) = &change.threshold {
        def.threshold = Some(t.clone());
    }
}

/// An `after` names an enabled threshold rule with the same grouping, within the time its
/// window is kept (twice the window).
fn check_after(rule: &Rule, rules: &[Rule]) -> Result<(), RuleError> {
    let Some(after) = &rule.after else {
        return Ok(());
    };
    let fail = |message: String| RuleError {
        rule: rule.id.clone(),
        key: "after".to_owned(),
        message,
    };
    if rule.threshold.is_some() {
        return Err(fail(
            "a rule takes a threshold or an `after`, not both".to_owned(),
        ));
    }
    let Some(first) = rules.iter().find(|r| r.id == after.rule) else {
        return Err(fail(format!("`{}` is not an enabled rule", after.rule)));
    };
    let Some(t) = &first.threshold else {
        return Err(fail(format!(
            "`{}` has no threshold window to look at",
            after.rule
        )));
    };
    if first.group_by != rule.group_by {
        return Err(fail(format!(
            "group_by must be the same as `{}`'s, so both see the same user or IP",
            after.rule
        )));
    }
    if after.count == 0 || after.within_seconds == 0 || after.within_seconds > 2 * t.window_seconds
    {
        return Err(fail(format!(
            "count must be at least 1 and within_seconds between 1 and {} (twice `{}`'s window)",
            2 * t.window_seconds,
            after.rule
        )));
    }
    Ok(())
}

fn apply(def: &mut RuleDef, change: &RuleOverride) -> Result<(), String> {
    if let Some(on) = change.enabled {
        def.enabled = on;
    }
    if let Some(s) = change.severity {
        def.severity = s;
    }
    if let Some(w) = change.dedup_window_seconds {
        def.dedup_window_seconds = Some(w);
    }
    if let Some(t) = &change.threshold {
        let Some(th) = def.threshold.as_mut() else {
            return Err("this rule has no threshold to change".to_owned());
        };
        let ThresholdDef {
            window_seconds,
            count,
            distinct,
            distinct_any,
            per_value,
            min_spread_seconds,
        } = th;
        if let Some(v) = t.window_seconds {
            *window_seconds = v;
        }
        if let Some(v) = t.count {
            *count = v;
        }
        if let Some(v) = t.min_spread_seconds {
            *min_spread_seconds = v;
        }
        if let Some(v) = &t.distinct {
            *distinct = v.clone();
        }
        if let Some(v) = &t.distinct_any {
            *distinct_any = v.clone();
        }
        if let Some(v) = &t.per_value {
            *per_value = Some(v.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile_and_cover_the_table() {
        let set = RuleSet::load(&RulesSettings::default()).unwrap();
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        for id in [
            "okta_brute_force_ip",
            "okta_brute_force_user",
            "okta_repeated_lockouts",
            "okta_password_spray",
            "okta_credential_stuffing",
            "okta_distributed_brute_force",
            "okta_mfa_push_bombing",
            "okta_admin_role_granted",
            "okta_api_token_created",
            "okta_policy_tampering",
            "okta_network_zone_tampering",
            "okta_mfa_reset",
            "okta_threatinsight",
            "okta_user_reported_suspicious",
            "okta_anonymizing_proxy",
            "okta_impossible_travel",
            "okta_idp_created",
            "okta_fastpass_phishing",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
    }

    #[test]
    fn overrides_change_builtin_rules() {
        let settings: RulesSettings = toml::from_str(
            r#"
            [builtin.okta_brute_force_ip]
            enabled = false
            [builtin.okta_repeated_lockouts]
            threshold = { count = 5 }
            severity = "critical"
            "#,
        )
        .unwrap();
        let set = RuleSet::load(&settings).unwrap();
        assert!(set.get("okta_brute_force_ip").is_none());
        assert_eq!(set.disabled(), ["okta_brute_force_ip"]);
        let lockouts = set.get("okta_repeated_lockouts").unwrap();
        assert_eq!(lockouts.threshold.as_ref().unwrap().count, 5);
        assert_eq!(lockouts.threshold.as_ref().unwrap().window_seconds, 10800);
        assert_eq!(lockouts.severity, Severity::Critical);
    }

    #[test]
    fn config_mistakes_name_the_rule_and_key() {
        let load = |text: &str| {
            RuleSet::load(&toml::from_str::<RulesSettings>(text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            load("[builtin.okta_nope]\nenabled = false"),
            "rule `okta_nope`: rules.builtin.okta_nope: there is no built-in rule with this id (see `vigil rules list`)"
        );
        assert!(
            load("[builtin.okta_api_token_created]\nthreshold = { count = 2 }")
                .contains("has no threshold")
        );
        assert!(
            load("[builtin.okta_repeated_lockouts]\nthreshold = { window_seconds = 0 }")
                .contains("threshold.window_seconds: must be between")
        );
        let custom = |body: &str| {
            load(&format!(
                "[[custom]]\nid = \"acme_x\"\ntitle = \"X\"\nseverity = \"low\"\n{body}"
            ))
        };
        assert_eq!(
            custom("match = [{ conditions = [{ field = \"a\" }] }]"),
            "rule `acme_x`: match[0].conditions[0]: needs one operator: equals, not_equals, any_of, none_of, contains, not_contains, starts_with, exists, not_equals_field or in_ip_list"
        );
        assert!(
            custom("match = [{ conditions = [{ field = \"a\", equals = 1, contains = \"b\" }] }]")
                .contains("exactly one operator")
        );
        assert!(custom("match = [{}]").contains("match[0]: needs event_types or conditions"));
        assert!(
            custom("match = [{ event_types = [\"a\"] }]\nthreshold = { window_seconds = 60 }")
                .contains("group_by: a threshold rule needs group_by")
        );
        assert!(
            custom("match = [{ conditions = [{ field = \"target[type=User\", exists = true }] }]")
                .contains("unbalanced")
        );
        assert!(
            load("[[custom]]\nid = \"okta_brute_force_ip\"\ntitle = \"X\"\nseverity = \"low\"\nmatch = [{ event_types = [\"a\"] }]")
                .contains("rules.custom[0].id: another rule already has this id")
        );
        assert!(
            custom("match = [{ event_types = [\"a\"] }]\nafter = { rule = \"okta_api_token_created\", count = 1, within_seconds = 60 }")
                .contains("after: `okta_api_token_created` has no threshold window")
        );
        assert!(
            custom("group_by = [\"actor.id\"]\nmatch = [{ event_types = [\"a\"] }]\nafter = { rule = \"okta_mfa_push_bombing\", count = 5, within_seconds = 5000 }")
                .contains("within_seconds between 1 and 1200")
        );
        assert!(
            custom("group_by = [\"actor.id\"]\nmatch = [{ event_types = [\"a\"] }]\nthreshold = { window_seconds = 60, count = 2 }\nafter = { rule = \"okta_mfa_push_bombing\", count = 5, within_seconds = 600 }")
                .contains("after: a rule takes a threshold or an `after`, not both")
        );
        assert!(
            custom("match = [{ event_types = [\"a\"] }]\nafter = { rule = \"nope\", count = 1, within_seconds = 60 }")
                .contains("`nope` is not an enabled rule")
        );
        assert!(
            load("[[custom]]\nid = \"Bad Id\"\ntitle = \"X\"\nseverity = \"low\"\nmatch = [{ event_types = [\"a\"] }]")
                .contains("id: use 1-100 lower-case")
        );
    }
}
