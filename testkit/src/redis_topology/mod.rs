//! Private Redis topologies for tests of TLS, Cluster and Sentinel clients.
//!
//! Every server is a real `redis-server` (7.0+, with `redis-cli` on `PATH`) on a free
//! loopback port, in its own temp dir, never the shared Redis on 6379:
//! - [`TlsRedis`]: one server on a TLS-only port, with a CA, server and client certificates
//!   made at run time, and a second, unrelated CA for "wrong CA" tests;
//! - [`RedisCluster`]: masters (+ replicas) joined by `redis-cli --cluster create`;
//! - [`SentinelSet`]: a master, a replica and three sentinels.
//!
//! Each process is a [`RedisNode`]: killed on drop together with its forks (it runs in a
//! process group of its own, with a small `sh` guard that kills the group if the test process
//! dies without dropping it). A port that turns out to be taken is retried with another, so a
//! port race never fails a test. Waits poll a condition against a deadline; a timeout panics
//! with the last state seen.

mod cluster;
pub(crate) mod node;
mod sentinel;
mod tls;

pub use cluster::{RedisCluster, SLOTS};
pub use node::RedisNode;
pub use sentinel::{SentinelOptions, SentinelSet};
pub use tls::{TlsAuthClients, TlsRedis};

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Ok`, or panics after `timeout` with `what` and
/// the last `Err` (the state seen), so a failed wait says why. For tests too: no fixed sleeps.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs one command on `127.0.0.1:port` over a fresh connection with short timeouts, so a
/// stopped or dead node answers with an error instead of hanging the test.
pub(crate) fn query<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let url = match password {
        Some(pw) => format!("redis://:{pw}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection_with_timeout(Duration::from_millis(500))?;
    con.set_read_timeout(Some(Duration::from_secs(1)))?;
    con.set_write_timeout(Some(Duration::from_secs(1)))?;
    cmd.query(&mut con)
}

/// The value of `field` in an `INFO` reply (`field:value` lines).
pub(crate) fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// `ROLE` of a node, as `(role, master port if a replica, replica link state)`.
pub(crate) fn role(
    port: u16,
    password: Option<&str>,
) -> Result<(String, Option<u16>, String), String> {
    let reply: redis::Value =
        query(port, password, &redis::cmd("ROLE")).map_err(|e| e.to_string())?;
    let items = match reply {
        redis::Value::Array(items) => items,
        other => return Err(format!("ROLE answered {other:?}")),
    };
    let text = |i: usize| items.get(i).and_then(value_string).unwrap_or_default();
    let role = text(0);
    if role == "slave" {
        let master_port = items.get(2).and_then(value_int).map(|p| p as u16);
        Ok((role, master_port, text(3)))
    } else {
        Ok((role, None, String::new()))
    }
}

pub(crate) fn value_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn value_int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        other => value_string(other).and_then(|s| s.parse().ok()),
    }
}
