//! # vigil-store: SQL storage shared by the API and the workers
//!
//! One [`Db`] handle over SQLite (the zero-setup default) or PostgreSQL (production), chosen
//! by the URL. Queries are written once and run on both engines through sqlx's `Any` driver,
//! so they stick to the common dialect:
//! - placeholders are `$1, $2, ...` (both engines accept them);
//! - timestamps are `BIGINT` milliseconds since the Unix epoch (see [`time`]);
//! - JSON is stored as `TEXT` (raw, exactly as received);
//! - booleans are `BOOLEAN` on PostgreSQL and integers on SQLite; bind Rust `bool`.
//!
//! Where the engines truly differ (advisory locks, triggers) the code branches on
//! [`Db::kind`]. Schema lives in `migrations/sqlite` and `migrations/postgres` at the
//! repository root: one file per change, the same meaning on both engines.
//!
//! # Layout
//! - [`db`]: connecting, creating the SQLite file, running migrations.
//! - [`time`]: millisecond timestamps <-> `chrono`.
//! - [`alert_open`]: opening or updating an alert, and the jobs that follow a new one.
//! - [`behaviour`]: the bounded queries of behavioural rules over stored events.
//! - [`notifications`]: escalation notifications, one per level and target, with outcomes.
//! - one module per table group, each owning its queries (added by each feature).

pub mod alert_open;
pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod behaviour;
pub mod db;
pub mod emails;
pub mod events;
pub mod lockouts;
pub mod notifications;
pub mod okta_cursor;
pub mod okta_event;
pub mod security_events;
pub mod sessions;
pub mod storable;
pub mod time;
pub mod users;

pub use db::{Db, DbKind, Failure, StoreError};
