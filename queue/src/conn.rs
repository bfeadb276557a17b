//! [`RedisConn`]: one cloneable connection handle for every supported deployment
//! (standalone, TLS, ACL, Sentinel, Cluster), and [`Connector`], which opens them.
//!
//! - Standalone: redis-rs's `ConnectionManager` (reconnects with backoff).
//! - Cluster: redis-rs's async `ClusterConnection` (follows MOVED/ASK and slot failovers).
//! - Sentinel: [`crate::sentinel`]: the master is asked from the sentinels, and asked again
//!   whenever the current one answers `READONLY` or the connection fails; a command refused
//!   by a demoted master (never executed) is sent once more to the new master.
//!
//! Everything vigil does with Redis goes through `RedisConn`, so the engine, the API's rate
//! limiter, the email send limit and the rule windows all follow a failover the same way.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::plan::{Plan, client_for, clone_certs, connection_info};
use crate::redis_settings::{Endpoint, RedisConfigError, RedisSettings, Target};
use crate::sentinel::SentinelConn;

/// A connection to the configured Redis deployment. Cheap to clone (clones share it).
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Managed(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

impl RedisConn {
    /// True on a Redis Cluster: a pipeline must then stay within one hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Managed(c) => c.req_packed_command(cmd),
            Inner::Plain(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
            Inner::Sentinel(s) => Box::pin(s.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(s) => Box::pin(s.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Managed(c) => c.get_db(),
            Inner::Plain(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(s) => s.db(),
        }
    }
}

/// Opens connections to the configured deployment.
#[derive(Clone)]
pub struct Connector {
    plan: Arc<Plan>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.plan.target)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Validates `[redis]` (naming the key on a mistake); connects nothing yet.
    pub fn new(settings: &RedisSettings) -> Result<Connector, RedisConfigError> {
        settings.validate()?;
        let target = settings.target()?;
        let from_url = settings.url_credentials();
        let tls = if settings.ca.is_some() || settings.client_cert.is_some() {
            Some(redis::TlsCertificates {
                client_tls: match (&settings.client_cert, &settings.client_key) {
                    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                        client_cert: cert.clone().into_bytes(),
                        client_key: key.clone().into_bytes(),
                    }),
                    _ => None,
                },
                root_cert: settings.ca.clone().map(String::into_bytes),
            })
        } else {
            None
        };
        // Credentials in a redis+sentinel:// URL are the sentinels'; in a redis(s):// URL,
        // the data node's. Explicit keys win over either.
        let (data_url, sentinel_url) = if settings.url.starts_with("redis+sentinel://") {
            (Default::default(), from_url)
        } else {
            (from_url, Default::default())
        };
        Ok(Connector {
            plan: Arc::new(Plan {
                target,
                username: settings.username.clone().or(data_url.username),
                password: settings.password.clone().or(data_url.password),
                sentinel_username: settings.sentinel_username.clone(),
                sentinel_password: settings.sentinel_password.clone().or(sentinel_url.password),
                tls,
                timeout: Duration::from_millis(settings.response_timeout_ms.max(1)),
            }),
        })
    }

    /// A one-line description for logs (no credentials).
    pub fn describe(&self) -> String {
        let list = |eps: &[Endpoint]| {
            eps.iter()
                .map(|e| format!("{}:{}", e.host, e.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.plan.target {
            Target::Standalone { endpoint, db } => format!(
                "standalone {}://{}:{}/{db}",
                if endpoint.tls { "rediss" } else { "redis" },
                endpoint.host,
                endpoint.port
            ),
            Target::Sentinel {
                sentinels,
                master_name,
                ..
            } => format!("sentinel master `{master_name}` via {}", list(sentinels)),
            Target::Cluster { nodes } => format!("cluster via {}", list(nodes)),
        }
    }

    /// The shared connection: reconnects by itself and follows failovers.
    pub async fn shared(&self) -> RedisResult<RedisConn> {
        let timeout = self.plan.timeout;
        Ok(RedisConn(match &self.plan.target {
            Target::Standalone { endpoint, db } => {
                let client = client_for(&self.plan, endpoint, *db)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = tokio::time::timeout(
                    timeout + Duration::from_secs(1),
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                .map_err(|_| timed_out("connecting to Redis"))??;
                Inner::Managed(manager)
            }
            Target::Cluster { nodes } => Inner::Cluster(self.cluster(nodes, timeout).await?),
            Target::Sentinel { .. } => {
                let conn = SentinelConn::new(self.plan.clone(), timeout);
                conn.connect_now().await?;
                Inner::Sentinel(Arc::new(conn))
            }
        }))
    }

    /// A connection of its own, for blocking commands (`BLPOP`) that would stall the shared
    /// one; `timeout` bounds each reply.
    pub async fn dedicated(&self, timeout: Duration) -> RedisResult<RedisConn> {
        Ok(RedisConn(match &self.plan.target {
            Target::Standalone { endpoint, db } => {
                let client = client_for(&self.plan, endpoint, *db)?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.plan.timeout))
                    .set_response_timeout(Some(timeout));
                Inner::Plain(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster { nodes } => Inner::Cluster(self.cluster(nodes, timeout).await?),
            Target::Sentinel { .. } => {
                let conn = SentinelConn::new(self.plan.clone(), timeout);
                conn.connect_now().await?;
                Inner::Sentinel(Arc::new(conn))
            }
        }))
    }

    async fn cluster(
        &self,
        nodes: &[Endpoint],
        timeout: Duration,
    ) -> RedisResult<ClusterConnection> {
        let infos = nodes
            .iter()
            .map(|n| connection_info(&self.plan, n, 0))
            .collect::<RedisResult<Vec<_>>>()?;
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(self.plan.timeout)
            .response_timeout(timeout)
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(1_000);
        if let Some(u) = &self.plan.username {
            builder = builder.username(u);
        }
        if let Some(p) = &self.plan.password {
            builder = builder.password(p);
        }
        if nodes.iter().any(|n| n.tls) {
            builder = builder.tls(redis::TlsMode::Secure);
            if let Some(certs) = &self.plan.tls {
                builder = builder.certs(clone_certs(certs));
            }
        }
        let client = builder.build()?;
        tokio::time::timeout(
            self.plan.timeout + Duration::from_secs(1),
            client.get_async_connection(),
        )
        .await
        .map_err(|_| timed_out("connecting to the Redis Cluster"))?
    }
}

fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {what}"),
    ))
}
