//! # vigil-rules: detection rules as data
//!
//! A rule says which Okta events it is about (event types, conditions on fields) and,
//! optionally, how many of them with the same grouping key within a window make an alert.
//! Built-in rules live in `rules/builtin.toml`; operators tune them and add their own in
//! config.toml with the same vocabulary ([`RulesSettings`]), checked at start.
//!
//! # Layout
//! - [`behaviour`]: behavioural rules (settings and arithmetic of the scheduled queries
//!   over stored events that `vigil-store` runs).
//! - [`field`]: reading Okta JSON paths forgivingly (`target[type=User].alternateId`).
//! - [`iplist`]: IP deny lists / threat-intel feeds (CIDRs), re-read when they change.
//! - [`rule`]: the TOML shape of a rule and its compiled, checked form.
//! - [`settings`]: `[rules]` in config.toml and the [`RuleSet`] in force.
//! - [`sigma`]: Sigma rules (YAML) loaded natively beside the built-in ones.
//! - [`window`]: threshold windows in Redis (shared, durable) or memory (`vigil rules test`).
//! - [`evaluate`]: one event through every rule → matches and firings.
//! - [`time`]: `published` in the forms exports carry (RFC 3339, SQL-style, epoch ms).
//!
//! The crate does no other I/O: turning firings into alerts is the workers' job.

pub mod behaviour;
pub mod evaluate;
pub mod field;
pub mod iplist;
pub mod rule;
pub mod settings;
pub mod sigma;
pub mod time;
pub mod window;

pub use behaviour::{BehaviouralRule, BehaviouralSettings};
pub use evaluate::{Evaluation, Firing};
pub use rule::{Rule, RuleDef, RuleError, RuleSource, Severity};
pub use settings::{RuleSet, RulesSettings};
pub use sigma::{SigmaInfo, SigmaProblem};
pub use window::{
    MemoryWindows, Observation, RecentQuery, RedisWindows, SessionObservation, SessionOrigin,
    WindowError, WindowStats, WindowStore,
};
