//! `[redis]`: which Redis deployment holds the queues, and how to reach it.
//!
//! Three modes, one key layout (every key a script touches sits in its queue's hash slot, so
//! the same scripts run everywhere):
//! - `standalone` (default): `url = "redis://HOST:PORT/DB"` or `rediss://` for TLS;
//!   `redis+sentinel://` URLs switch to Sentinel mode.
//! - `sentinel`: `sentinels = ["HOST:PORT", ...]` and `master_name`; vigil asks the sentinels
//!   for the master and follows failovers (`READONLY`, lost connections).
//! - `cluster`: `nodes = ["redis://HOST:PORT", ...]` (any subset of the cluster); MOVED/ASK and
//!   slot-owner failovers are followed.
//!
//! TLS (`rediss://`, or `tls = true` for Sentinel-announced masters) verifies the server
//! against `ca` (PEM; `ca_file` names the file) or the system roots; `client_cert` +
//! `client_key` add a client certificate. ACL: `username` + `password` (`password_file`).
//! [`RedisSettings::validate`] checks all of it before anything connects, naming the key.

use serde::{Deserialize, Serialize};

/// How vigil reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

/// `[redis]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `standalone`, `sentinel` or `cluster`.
    pub mode: RedisMode,
    /// Standalone: `redis://[USER:PASS@]HOST:PORT/DB`, `rediss://...` (TLS), or
    /// `redis+sentinel://[:PASS@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`.
    pub url: String,
    /// Sentinel: the sentinels, `HOST:PORT` or `redis://HOST:PORT` / `rediss://HOST:PORT`.
    pub sentinels: Vec<String>,
    /// Sentinel: the monitored master's name.
    pub master_name: String,
    /// Sentinel: the sentinels' own ACL user and password, when they require one.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// Sentinel: the database index on the master.
    pub db: i64,
    /// Sentinel: connect to the announced master over TLS.
    pub tls: bool,
    /// Cluster: seed nodes, `redis://HOST:PORT` or `rediss://HOST:PORT`.
    pub nodes: Vec<String>,
    /// ACL user and password for the data nodes (override any in the URL).
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS: the CA certificate(s) that sign the server's certificate (PEM); without it the
    /// system roots are used. Set `ca_file` to read it from a file.
    pub ca: Option<String>,
    /// TLS: a client certificate and its key (PEM), for servers that require one.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Prefix of every key vigil writes, so one Redis can host several deployments.
    pub prefix: String,
    /// A command that takes longer than this fails (and is retried by workers).
    pub response_timeout_ms: u64,
    /// When > 0, an enqueue is acknowledged only after `WAIT` confirms this many replicas
    /// hold it (no acknowledged job is lost on a failover).
    pub min_replicas_ack: u32,
    /// How long an enqueue waits for those replicas before answering "outcome unknown".
    pub replica_ack_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            mode: RedisMode::Standalone,
            url: "redis://127.0.0.1:6379/0".to_owned(),
            sentinels: Vec::new(),
            master_name: String::new(),
            sentinel_username: None,
            sentinel_password: None,
            db: 0,
            tls: false,
            nodes: Vec::new(),
            username: None,
            password: None,
            ca: None,
            client_cert: None,
            client_key: None,
            prefix: "vigil".to_owned(),
            response_timeout_ms: 5_000,
            min_replicas_ack: 0,
            replica_ack_timeout_ms: 1_000,
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("mode", &self.mode)
            .field("url", &redact_url(&self.url))
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("nodes", &self.nodes)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A configuration mistake in `[redis]`, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis.{key}: {message}")]
pub struct RedisConfigError {
    pub key: &'static str,
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> RedisConfigError {
    RedisConfigError {
        key,
        message: message.into(),
    }
}

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Where to connect, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Standalone {
        endpoint: Endpoint,
        db: i64,
    },
    Sentinel {
        sentinels: Vec<Endpoint>,
        master_name: String,
        db: i64,
        tls: bool,
    },
    Cluster {
        nodes: Vec<Endpoint>,
    },
}

/// Credentials found in the URL (`redis://user:pass@...`), used unless `username` /
/// `password` are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl RedisSettings {
    /// Every check that connecting would make, without connecting: URLs and modes, TLS
    /// material, prefix, timeouts. The error names the key.
    pub fn validate(&self) -> Result<(), RedisConfigError> {
        self.target().map(|_| ())?;
        if self.prefix.is_empty() {
            return Err(bad("prefix", "must not be empty"));
        }
        if self.prefix.contains(['{', '}']) || self.prefix.chars().any(char::is_whitespace) {
            return Err(bad(
                "prefix",
                "must not contain `{`, `}` or spaces (braces would change which Cluster slot \
                 a key lives in)",
            ));
        }
        if self.response_timeout_ms == 0 {
            return Err(bad("response_timeout_ms", "must be at least 1"));
        }
        if self.min_replicas_ack > 0 && self.replica_ack_timeout_ms == 0 {
            return Err(bad(
                "replica_ack_timeout_ms",
                "must be at least 1 when min_replicas_ack > 0",
            ));
        }
        if let Some(ca) = &self.ca {
            let n = pem_certificates(ca).map_err(|e| bad("ca", e))?;
            if n == 0 {
                return Err(bad(
                    "ca",
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let n = pem_certificates(cert).map_err(|e| bad("client_cert", e))?;
                if n == 0 {
                    return Err(bad("client_cert", "holds no PEM certificate"));
                }
                pem_private_key(key).map_err(|e| bad("client_key", e))?;
            }
            (Some(_), None) => return Err(bad("client_key", "is required with client_cert")),
            (None, Some(_)) => return Err(bad("client_cert", "is required with client_key")),
            (None, None) => {}
        }
        let uses_tls = match self.target()? {
            Target::Standalone { endpoint, .. } => endpoint.tls,
            Target::Sentinel { tls, .. } => tls,
            Target::Cluster { nodes } => nodes.iter().any(|n| n.tls),
        };
        if !uses_tls && (self.ca.is_some() || self.client_cert.is_some()) {
            return Err(bad(
                "ca",
                "TLS material is set but no connection uses TLS (use rediss:// or tls = true)",
            ));
        }
        Ok(())
    }

    /// The validated connection target.
    pub fn target(&self) -> Result<Target, RedisConfigError> {
        let mode = match (self.mode, self.url.starts_with("redis+sentinel://")) {
            (RedisMode::Standalone, true) => return self.sentinel_from_url(),
            (mode, _) => mode,
        };
        match mode {
            RedisMode::Standalone => {
                let (endpoint, db, _) = parse_url(&self.url).map_err(|e| bad("url", e))?;
                Ok(Target::Standalone { endpoint, db })
            }
            RedisMode::Sentinel => {
                if self.sentinels.is_empty() {
                    return Err(bad(
                        "sentinels",
                        "mode = \"sentinel\" needs at least one sentinel (\"HOST:PORT\")",
                    ));
                }
                if self.master_name.trim().is_empty() {
                    return Err(bad(
                        "master_name",
                        "mode = \"sentinel\" needs the monitored master's name",
                    ));
                }
                let sentinels = self
                    .sentinels
                    .iter()
                    .map(|s| parse_host_port(s, 26379))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("sentinels", e))?;
                if self.db < 0 {
                    return Err(bad("db", "must be 0 or more"));
                }
                Ok(Target::Sentinel {
                    sentinels,
                    master_name: self.master_name.clone(),
                    db: self.db,
                    tls: self.tls,
                })
            }
            RedisMode::Cluster => {
                if self.nodes.is_empty() {
                    return Err(bad(
                        "nodes",
                        "mode = \"cluster\" needs at least one node (\"redis://HOST:PORT\")",
                    ));
                }
                let nodes = self
                    .nodes
                    .iter()
                    .map(|s| parse_host_port(s, 6379))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("nodes", e))?;
                Ok(Target::Cluster { nodes })
            }
        }
    }

    fn sentinel_from_url(&self) -> Result<Target, RedisConfigError> {
        let rest = &self.url["redis+sentinel://".len()..];
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let master_name = parts
            .next()
            .ok_or_else(|| {
                bad(
                    "url",
                    "redis+sentinel:// needs the master name: redis+sentinel://HOST:PORT/MASTER[/DB]",
                )
            })?
            .to_owned();
        let db = match parts.next() {
            Some(d) => d
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| bad("url", format!("`{d}` is not a database number")))?,
            None => 0,
        };
        let sentinels = hosts
            .split(',')
            .map(|h| parse_host_port(h, 26379))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("url", e))?;
        Ok(Target::Sentinel {
            sentinels,
            master_name,
            db,
            tls: self.tls,
        })
    }

    /// Credentials from the URL (standalone and `redis+sentinel://`), if any.
    pub fn url_credentials(&self) -> UrlCredentials {
        let Some((_, rest)) = self.url.split_once("://") else {
            return UrlCredentials::default();
        };
        let Some((userinfo, _)) = rest.split_once('@') else {
            return UrlCredentials::default();
        };
        let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let nonempty = |s: &str| (!s.is_empty()).then(|| percent_decode(s));
        UrlCredentials {
            username: nonempty(user),
            password: nonempty(pass),
        }
    }

    /// The URL with any password replaced by `***` (for logs and `check-config`).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `url` with the password of its user info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://{userinfo}@{host}"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `redis://[USER:PASS@]HOST[:PORT][/DB]` or `rediss://...`.
fn parse_url(url: &str) -> Result<(Endpoint, i64, UrlCredentials), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{}` is not a Redis URL: write redis://HOST:PORT/DB (or rediss:// for TLS)",
            redact_url(url)
        ));
    };
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "unsupported scheme `{other}://`: use redis://, rediss:// (TLS) or \
                 redis+sentinel://"
            ));
        }
    };
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or("");
    let db = if path.is_empty() {
        0
    } else {
        path.parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| format!("`/{path}` is not a database number"))?
    };
    let mut endpoint = parse_host_port(hostport, 6379)?;
    endpoint.tls = tls;
    Ok((endpoint, db, UrlCredentials::default()))
}

/// `HOST:PORT`, `[V6]:PORT`, or a `redis://` / `rediss://` URL with no path.
fn parse_host_port(s: &str, default_port: u16) -> Result<Endpoint, String> {
    let s = s.trim();
    let (tls, rest) = if let Some(r) = s.strip_prefix("rediss://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("redis://") {
        (false, r)
    } else if s.contains("://") {
        return Err(format!(
            "`{}`: use HOST:PORT, redis:// or rediss://",
            redact_url(s)
        ));
    } else {
        (false, s)
    };
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let rest = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{rest}`: unclosed `[`"))?;
        (h.to_owned(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (rest.to_owned(), ""),
        }
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    let port = if port.is_empty() {
        default_port
    } else {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{port}` in `{s}` is not a port"))?
    };
    Ok(Endpoint { host, port, tls })
}

/// How many certificates a PEM text holds (error when a PEM block is damaged).
pub(crate) fn pem_certificates(pem: &str) -> Result<usize, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| format!("not a readable PEM certificate ({e})"))?;
        n += 1;
    }
    Ok(n)
}

fn pem_private_key(pem: &str) -> Result<(), String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("not a readable PEM private key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut RedisSettings)) -> RedisSettings {
        let mut s = RedisSettings::default();
        f(&mut s);
        s
    }

    #[test]
    fn the_default_is_local_standalone() {
        let s = RedisSettings::default();
        s.validate().unwrap();
        assert_eq!(
            s.target().unwrap(),
            Target::Standalone {
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 6379,
                    tls: false
                },
                db: 0
            }
        );
    }

    #[test]
    fn a_bare_host_port_is_refused_naming_the_key() {
        let err = with(|s| s.url = "127.0.0.1:6379".into())
            .validate()
            .unwrap_err();
        assert_eq!(err.key, "url");
        assert!(err.to_string().starts_with("redis.url: "), "{err}");
        assert!(err.message.contains("redis://HOST:PORT/DB"), "{err}");
        let err = with(|s| s.url = "http://x:1".into())
            .validate()
            .unwrap_err();
        assert!(
            err.message.contains("unsupported scheme `http://`"),
            "{err}"
        );
        let err = with(|s| s.url = "redis://h:99999/0".into())
            .validate()
            .unwrap_err();
        assert!(err.message.contains("not a port"), "{err}");
        let err = with(|s| s.url = "redis://h:1/x".into())
            .validate()
            .unwrap_err();
        assert!(err.message.contains("database number"), "{err}");
    }

    #[test]
    fn rediss_means_tls_and_keeps_host_port_db() {
        let s = with(|s| s.url = "rediss://user:secret@cache.example:6380/3".into());
        s.validate().unwrap();
        assert_eq!(
            s.target().unwrap(),
            Target::Standalone {
                endpoint: Endpoint {
                    host: "cache.example".into(),
                    port: 6380,
                    tls: true
                },
                db: 3
            }
        );
        assert_eq!(
            s.url_credentials(),
            UrlCredentials {
                username: Some("user".into()),
                password: Some("secret".into())
            }
        );
        assert_eq!(s.redacted_url(), "rediss://user:***@cache.example:6380/3");
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn sentinel_needs_sentinels_and_a_master_name() {
        let err = with(|s| s.mode = RedisMode::Sentinel)
            .validate()
            .unwrap_err();
        assert_eq!(err.key, "sentinels");
        let err = with(|s| {
            s.mode = RedisMode::Sentinel;
            s.sentinels = vec!["127.0.0.1:26379".into()];
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "master_name");
        let s = with(|s| {
            s.mode = RedisMode::Sentinel;
            s.sentinels = vec!["127.0.0.1:26379".into(), "redis://h2".into()];
            s.master_name = "mymaster".into();
        });
        s.validate().unwrap();
        let Target::Sentinel { sentinels, .. } = s.target().unwrap() else {
            panic!("sentinel")
        };
        assert_eq!(sentinels[1].port, 26379);
    }

    #[test]
    fn a_sentinel_url_switches_to_sentinel_mode() {
        let s = with(|s| s.url = "redis+sentinel://:pw@h1:26379,h2:26380/mymaster/2".into());
        assert_eq!(
            s.target().unwrap(),
            Target::Sentinel {
                sentinels: vec![
                    Endpoint {
                        host: "h1".into(),
                        port: 26379,
                        tls: false
                    },
                    Endpoint {
                        host: "h2".into(),
                        port: 26380,
                        tls: false
                    }
                ],
                master_name: "mymaster".into(),
                db: 2,
                tls: false
            }
        );
        let err = with(|s| s.url = "redis+sentinel://h1:26379".into())
            .validate()
            .unwrap_err();
        assert!(err.message.contains("master name"), "{err}");
    }

    #[test]
    fn cluster_needs_nodes() {
        let err = with(|s| s.mode = RedisMode::Cluster)
            .validate()
            .unwrap_err();
        assert_eq!(err.key, "nodes");
        with(|s| {
            s.mode = RedisMode::Cluster;
            s.nodes = vec!["redis://127.0.0.1:7000".into(), "127.0.0.1:7001".into()];
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn tls_material_is_checked() {
        let err = with(|s| {
            s.url = "rediss://h:1".into();
            s.ca = Some("not pem".into());
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "ca");
        let err = with(|s| {
            s.url = "rediss://h:1".into();
            s.client_cert = Some("x".into());
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "client_key");
    }

    #[test]
    fn a_prefix_with_braces_is_refused() {
        let err = with(|s| s.prefix = "a{b}".into()).validate().unwrap_err();
        assert_eq!(err.key, "prefix");
    }

    #[test]
    fn a_mode_name_must_be_known() {
        let err = serde_json::from_str::<RedisSettings>(r#"{"mode":"replicated"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
