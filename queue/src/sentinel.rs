//! Redis Sentinel: the master is asked from the sentinels (`SENTINEL get-master-addr-by-name`)
//! and confirmed with `ROLE`; it is asked again whenever the current connection answers
//! `READONLY` (a demoted master) or fails. A command the old master refused (`READONLY`, or a
//! refused connection: it never ran) is sent once more to the new master; a command whose
//! reply was lost is not (its outcome is unknown, and the caller decides).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};

use crate::plan::{Plan, client_for};
use crate::redis_settings::{Endpoint, Target};

/// A connection to whichever node the sentinels name as master.
pub(crate) struct SentinelConn {
    plan: Arc<Plan>,
    /// The plan with the sentinels' own credentials.
    sentinels: Plan,
    timeout: Duration,
    state: std::sync::Mutex<State>,
    resolving: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    generation: u64,
    conn: Option<MultiplexedConnection>,
}

impl SentinelConn {
    pub(crate) fn new(plan: Arc<Plan>, timeout: Duration) -> SentinelConn {
        SentinelConn {
            sentinels: plan.for_sentinels(),
            plan,
            timeout,
            state: std::sync::Mutex::new(State::default()),
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    fn target(&self) -> (&[Endpoint], &str, i64, bool) {
        match &self.plan.target {
            Target::Sentinel {
                sentinels,
                master_name,
                db,
                tls,
            } => (sentinels, master_name, *db, *tls),
            _ => (&[], "", 0, false),
        }
    }

    pub(crate) fn db(&self) -> i64 {
        self.target().2
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves and connects now (startup fails fast when no sentinel answers).
    pub(crate) async fn connect_now(&self) -> RedisResult<()> {
        self.current().await.map(|_| ())
    }

    async fn current(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        {
            let s = self.state();
            if let Some(c) = &s.conn {
                return Ok((s.generation, c.clone()));
            }
        }
        let _one_at_a_time = self.resolving.lock().await;
        {
            let s = self.state();
            if let Some(c) = &s.conn {
                return Ok((s.generation, c.clone()));
            }
        }
        let conn = self.resolve().await?;
        let mut s = self.state();
        s.generation += 1;
        s.conn = Some(conn.clone());
        Ok((s.generation, conn))
    }

    /// Forgets connection `generation` (a newer one is kept).
    fn invalidate(&self, generation: u64) {
        let mut s = self.state();
        if s.generation == generation && s.conn.is_some() {
            s.conn = None;
            tracing::warn!("Redis master connection lost or demoted; asking the sentinels again");
        }
    }

    async fn resolve(&self) -> RedisResult<MultiplexedConnection> {
        let (sentinels, name, db, tls) = self.target();
        let mut last: Option<RedisError> = None;
        for sentinel in sentinels {
            let addr = match self.ask(sentinel, name).await {
                Ok(addr) => addr,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let endpoint = Endpoint {
                host: addr.0,
                port: addr.1,
                tls,
            };
            match self.open_master(&endpoint, db).await {
                Ok(c) => {
                    tracing::info!(master = %format!("{}:{}", endpoint.host, endpoint.port),
                        "connected to the Redis master named by the sentinels");
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no sentinel configured"))
        }))
    }

    async fn ask(&self, sentinel: &Endpoint, name: &str) -> RedisResult<(String, u16)> {
        let mut conn = self.open(&self.sentinels, sentinel, 0).await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query_async(&mut conn)
            .await?;
        addr.ok_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know this master",
                name.to_owned(),
            ))
        })
    }

    async fn open_master(&self, ep: &Endpoint, db: i64) -> RedisResult<MultiplexedConnection> {
        let mut conn = self.open(&self.plan, ep, db).await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(Value::BulkString(b)) if b.as_slice() == b"master" => Ok(conn),
            _ => Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "the node the sentinels named is not a master yet",
            ))),
        }
    }

    async fn open(
        &self,
        plan: &Plan,
        ep: &Endpoint,
        db: i64,
    ) -> RedisResult<MultiplexedConnection> {
        let client = client_for(plan, ep, db)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.plan.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub(crate) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut again = true;
        loop {
            let (generation, mut conn) = self.current().await?;
            let out = conn.req_packed_command(cmd).await;
            if let Err(e) = &out
                && is_failover(e)
            {
                self.invalidate(generation);
                if again && never_ran(e) {
                    again = false;
                    continue;
                }
            }
            return out;
        }
    }

    pub(crate) async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut again = true;
        loop {
            let (generation, mut conn) = self.current().await?;
            let out = conn.req_packed_commands(pipeline, offset, count).await;
            let refused = match &out {
                Err(e) if is_failover(e) => {
                    self.invalidate(generation);
                    never_ran(e)
                }
                Ok(values) if values.iter().any(is_readonly_value) => {
                    self.invalidate(generation);
                    true
                }
                _ => false,
            };
            if refused && again {
                again = false;
                continue;
            }
            return out;
        }
    }
}

fn is_readonly_value(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::ReadOnly)
        || e.details().is_some_and(|d| d.contains("READONLY")))
}

fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.to_string().contains("READONLY")
}

/// An error after which the master must be asked for again.
fn is_failover(e: &RedisError) -> bool {
    is_readonly(e)
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
}

/// The command certainly did not run: the demoted master refused it, or no connection.
fn never_ran(e: &RedisError) -> bool {
    is_readonly(e) || e.is_connection_refusal()
}
