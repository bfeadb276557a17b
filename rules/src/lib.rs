//! # vigil-rules: detection rules as data
//!
//! A rule says which Okta events it is about (event types, conditions on fields) and,
//! optionally, how many of them with the same grouping key within a window make an alert.
//! Built-in rules live in `rules/builtin.toml`; operators tune them and add their own in
//! config.toml with the same vocabulary ([`RulesSettings`]), checked at start.
//!
//! # Layout
//! - [`field`]: reading Okta JSON paths forgivingly (`target[type=User].alternateId`).
//! - [`rule`]: the TOML shape of a rule and its compiled, checked form.
//! - [`settings`]: `[rules]` in config.toml and the [`RuleSet`] in force.
//! - [`window`]: threshold windows in Redis (shared, durable) or memory (`vigil rules test`).
//! - [`evaluate`]: one event through every rule → matches and firings.
//!
//! The crate does no other I/O: turning firings into alerts is the workers' job.

pub mod evaluate;
pub mod field;
pub mod rule;
pub mod settings;
pub mod window;

pub use evaluate::{Evaluation, Firing};
pub use rule::{Rule, RuleDef, RuleError, Severity};
pub use settings::{RuleSet, RulesSettings};
pub use window::{
    MemoryWindows, Observation, RecentQuery, RedisWindows, WindowError, WindowStats, WindowStore,
};
