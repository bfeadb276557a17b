//! Queue names. A name is part of the contract: it appears in URLs
//! (`/api/v1/queues/{queue}`), config sections (`[queues.email]`), Redis keys and metrics.
//!
//! A name is declared by its job kind ([`crate::Job::QUEUE`]) and becomes known when the kind
//! is registered ([`crate::register`]); parsing (URLs, config, API keys, Redis records) only
//! accepts registered names, so an unknown name is an error that lists the known ones.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The name of one job queue (one job kind), e.g. `email`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Queue(&'static str);

impl Queue {
    /// Declares a queue name: 1 to 40 characters of `a-z`, `0-9` and `_`, starting with a
    /// letter (checked at compile time when used in a `const`).
    pub const fn new(name: &'static str) -> Queue {
        let b = name.as_bytes();
        assert!(
            !b.is_empty() && b.len() <= 40,
            "a queue name has 1 to 40 characters"
        );
        assert!(b[0].is_ascii_lowercase(), "a queue name starts with a-z");
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            assert!(
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_',
                "a queue name holds only a-z, 0-9 and _"
            );
            i += 1;
        }
        Queue(name)
    }

    /// The queue's wire name, e.g. `okta_fetch`.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// Every registered queue, in name order.
    pub fn all() -> Vec<Queue> {
        crate::registry::queues()
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A queue name that no registered job kind declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown queue `{0}`; expected one of {known}", known = known_list())]
pub struct UnknownQueue(pub String);

fn known_list() -> String {
    let names: Vec<&str> = Queue::all().into_iter().map(Queue::as_str).collect();
    names.join(", ")
}

impl FromStr for Queue {
    type Err = UnknownQueue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::registry::lookup(s).ok_or_else(|| UnknownQueue(s.to_owned()))
    }
}

impl Serialize for Queue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Queue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Queue, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditJob, EmailJob, Job};

    #[test]
    fn registered_names_round_trip_through_str_and_serde() {
        for q in Queue::all() {
            assert_eq!(q.as_str().parse::<Queue>().unwrap(), q);
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(json, format!("\"{}\"", q.as_str()));
            assert_eq!(serde_json::from_str::<Queue>(&json).unwrap(), q);
        }
        assert!(Queue::all().contains(&EmailJob::QUEUE));
        assert!(Queue::all().contains(&AuditJob::QUEUE));
    }

    #[test]
    fn an_unknown_name_is_refused_naming_the_known_ones() {
        let err = "emails".parse::<Queue>().unwrap_err().to_string();
        assert!(err.contains("unknown queue `emails`"), "{err}");
        assert!(err.contains("email") && err.contains("okta_fetch"), "{err}");
        assert!(serde_json::from_str::<Queue>("\"nope\"").is_err());
    }
}
