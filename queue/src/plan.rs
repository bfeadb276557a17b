//! [`Plan`]: what opening a connection needs, resolved once from `[redis]` (target, ACL and
//! sentinel credentials, TLS material, timeout), and the clients for one node. Used by the
//! connection handle ([`crate::conn`]) and the Sentinel connection ([`crate::sentinel`]).

use std::time::Duration;

use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
};

use crate::redis_settings::{Endpoint, Target};

/// Everything needed to open connections, resolved once from `[redis]`.
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
    pub(crate) tls: Option<redis::TlsCertificates>,
    pub(crate) timeout: Duration,
}

impl Plan {
    /// The same plan with the sentinels' credentials in place of the data nodes' (for the
    /// connections that ask a sentinel where the master is).
    pub(crate) fn for_sentinels(&self) -> Plan {
        Plan {
            target: self.target.clone(),
            username: self.sentinel_username.clone(),
            password: self.sentinel_password.clone(),
            sentinel_username: None,
            sentinel_password: None,
            tls: self.tls.as_ref().map(clone_certs),
            timeout: self.timeout,
        }
    }
}

pub(crate) fn clone_certs(c: &redis::TlsCertificates) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: c.client_tls.as_ref().map(|t| redis::ClientTlsConfig {
            client_cert: t.client_cert.clone(),
            client_key: t.client_key.clone(),
        }),
        root_cert: c.root_cert.clone(),
    }
}

/// Connection info for a data node (credentials and database of the plan).
pub(crate) fn connection_info(plan: &Plan, ep: &Endpoint, db: i64) -> RedisResult<ConnectionInfo> {
    let addr = if ep.tls {
        ConnectionAddr::TcpTls {
            host: ep.host.clone(),
            port: ep.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(ep.host.clone(), ep.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(u) = &plan.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = &plan.password {
        redis = redis.set_password(p);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// A client for one data node, with the plan's TLS material.
pub(crate) fn client_for(plan: &Plan, ep: &Endpoint, db: i64) -> RedisResult<Client> {
    let info = connection_info(plan, ep, db)?;
    match (&plan.tls, ep.tls) {
        (Some(certs), true) => Client::build_with_tls(info, clone_certs(certs)),
        _ => Client::open(info),
    }
}
