//! # vigil-testkit: what vigil's tests stand on (never shipped)
//!
//! Tests talk to real services. This crate gives each test its own isolated piece of them:
//! - [`db`]: a fresh, migrated database per test — a temp SQLite file, or a uniquely named
//!   PostgreSQL database on 127.0.0.1:5432 that is dropped when the test ends.
//! - [`redis`]: a unique key prefix on the shared Redis, or a private `redis-server` on a
//!   free port for tests that stop, restart or stall Redis.
//! - [`redis_topology`]: private TLS, Cluster and Sentinel topologies of real `redis-server`
//!   processes, with failover, kill and stall helpers.
//! - [`smtp`]: a real SMTP server in-process, with injectable failures and outages.
//! - [`webhook`]: a real HTTP server receiving webhooks, with answers of your choice.
//! - [`certs`]: a throwaway CA and server certificate for TLS listeners.
//! - [`channels`]: local Slack, Teams and PagerDuty receivers that check each format and
//!   keep PagerDuty's incidents by dedup key.
//!
//! - [`fake_okta`]: a fake Okta org (System Log API, OAuth + DPoP, rate limits, faults);
//!   [`okta_hook`]: an Okta Event Hook sender (verification and deliveries).
//! - [`oidc`]: a local OpenID Connect provider (discovery, JWKS, authorize, token with PKCE)
//!   for single sign-on tests.

pub mod certs;
pub mod channels;
pub mod db;
pub mod fake_okta;
pub mod oidc;
pub mod okta_hook;
pub mod redis;
pub mod redis_topology;
pub mod smtp;
pub mod webdriver;
pub mod webhook;
