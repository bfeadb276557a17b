//! A master, a replica and three sentinels: start, ask, fail over, kill, stall.

use super::node::{Probe, RedisNode};
use super::{query, role, wait_for};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// How long starting, a failover or a promotion after a kill may take.
const TIMEOUT: Duration = Duration::from_secs(30);
const QUORUM: usize = 2;
const SENTINELS: usize = 3;

/// How to start a [`SentinelSet`].
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// `requirepass` + `masterauth` on both data nodes and `sentinel auth-pass` on the
    /// sentinels (which themselves need no password). `None`: no password anywhere.
    pub password: Option<String>,
    /// `min-replicas-to-write` on the data nodes; `None` leaves it unset (Redis' 0).
    pub min_replicas_to_write: Option<u32>,
    /// `SENTINEL DEBUG info-period 1000 publish-period 500 tilt-period 5000` (defaults
    /// 10000, 2000, 30000), so sentinels find each other and re-point an old master within
    /// ~2 s instead of ~11 s, and a sentinel that was stalled (or starved of CPU) for over
    /// 2 s stays in TILT (no failovers) 5 s instead of 30 s. Detection
    /// (`down-after-milliseconds 1000`) and the failover itself are unchanged.
    pub fast_timers: bool,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            password: None,
            min_replicas_to_write: None,
            fast_timers: true,
        }
    }
}

/// Data nodes `[first master, first replica]` and three sentinels monitoring them as
/// [`master_name`](Self::master_name) with quorum 2, `down-after-milliseconds 1000`,
/// `failover-timeout 5000`, `parallel-syncs 1`. Everything is killed on drop.
pub struct SentinelSet {
    name: String,
    password: Option<String>,
    data: Vec<RedisNode>,
    sentinels: Vec<RedisNode>,
}

impl SentinelSet {
    /// [`start_with`](Self::start_with) default options.
    pub fn start() -> SentinelSet {
        SentinelSet::start_with(SentinelOptions::default())
    }

    /// Starts the master, the replica (waits for its link), then the sentinels, and waits
    /// until every sentinel sees the master, the replica (link ok) and the two other sentinels.
    pub fn start_with(options: SentinelOptions) -> SentinelSet {
        let name = "vigil".to_owned();
        let password = options.password.clone();
        let probe = Probe::Plain {
            password: password.clone(),
        };
        let data_node = |what: &str, master: Option<u16>| {
            let args = |port: u16, dir: &Path| {
                let mut args = args_of(&[
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--repl-diskless-sync-delay",
                    "0",
                ]);
                if let Some(master) = master {
                    args.extend(args_of(&["--replicaof", "127.0.0.1", &master.to_string()]));
                }
                if let Some(pw) = &options.password {
                    args.extend(args_of(&["--requirepass", pw, "--masterauth", pw]));
                }
                if let Some(n) = options.min_replicas_to_write {
                    args.extend(args_of(&["--min-replicas-to-write", &n.to_string()]));
                }
                args.extend([OsString::from("--dir"), dir.into()]);
                args
            };
            RedisNode::spawn(what, false, &probe, &args)
        };
        let master = data_node("sentinel-set master", None);
        let master_port = master.port();
        let replica = data_node("sentinel-set replica", Some(master_port));
        let replica_port = replica.port();
        wait_for("the replica's link to the master", TIMEOUT, || match role(
            replica_port,
            password.as_deref(),
        )? {
            (r, Some(m), link) if r == "slave" && m == master_port && link == "connected" => Ok(()),
            other => Err(format!("ROLE {other:?}")),
        });

        let mut conf = format!(
            "sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n"
        );
        if let Some(pw) = &password {
            conf.push_str(&format!("sentinel auth-pass {name} {pw}\n"));
        }
        let sentinel_args = |port: u16, dir: &Path| {
            let file = dir.join("sentinel.conf");
            std::fs::write(&file, &conf).expect("write sentinel.conf");
            let mut args = vec![OsString::from(file), "--sentinel".into()];
            args.extend(args_of(&[
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ]));
            args.extend([OsString::from("--dir"), dir.into()]);
            args
        };
        let no_password = Probe::Plain { password: None };
        let fast_timers = options.fast_timers;
        let sentinels: Vec<RedisNode> = std::thread::scope(|s| {
            let starting: Vec<_> = (0..SENTINELS)
                .map(|i| {
                    let (args, probe) = (&sentinel_args, &no_password);
                    s.spawn(move || {
                        let node = RedisNode::spawn(&format!("sentinel {i}"), false, probe, args);
                        if fast_timers {
                            let debug = redis::cmd("SENTINEL")
                                .arg(&["DEBUG", "info-period", "1000", "publish-period", "500"][..])
                                .arg(&["tilt-period", "5000"][..])
                                .clone();
                            query::<()>(node.port(), None, &debug).expect("SENTINEL DEBUG");
                        }
                        node
                    })
                })
                .collect();
            starting
                .into_iter()
                .map(|h| h.join().expect("sentinel start"))
                .collect()
        });
        let set = SentinelSet {
            name,
            password,
            data: vec![master, replica],
            sentinels,
        };
        for &s in &set.sentinel_ports() {
            wait_for("every sentinel to see the whole set", TIMEOUT, || {
                set.sentinel_sees(s, master_port, replica_port)
            });
        }
        set
    }

    /// The name the sentinels monitor the master by.
    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// The data nodes' password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `redis://127.0.0.1:<port>` of each running sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        super::node::running_urls(&self.sentinels)
    }

    /// `redis+sentinel://127.0.0.1:<port>,.../<master name>` over the running sentinels (the
    /// form `[redis] url` takes; a password, if any, is given apart: see [`Self::password`]).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// Ports of the running sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter(|n| n.is_running())
            .map(RedisNode::port)
            .collect()
    }

    /// Ports of the two data nodes (started as master and replica), killed ones included.
    pub fn data_ports(&self) -> [u16; 2] {
        [self.data[0].port(), self.data[1].port()]
    }

    /// The current master's port, per `SENTINEL get-master-addr-by-name` of the first live
    /// sentinel that answers.
    pub fn master_port(&self) -> u16 {
        self.live_sentinels()
            .into_iter()
            .find_map(|s| self.master_seen_by(s).ok())
            .expect("no sentinel answered get-master-addr-by-name")
    }

    /// The running data node that is not the current master.
    pub fn replica_port(&self) -> u16 {
        let master = self.master_port();
        self.data
            .iter()
            .find(|n| n.is_running() && n.port() != master)
            .map(RedisNode::port)
            .expect("no running replica")
    }

    /// The node (data node or sentinel) on `port`.
    pub fn node(&self, port: u16) -> &RedisNode {
        self.data
            .iter()
            .chain(&self.sentinels)
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node of the sentinel set on port {port}"))
    }

    /// `SENTINEL FAILOVER <name>` (once a sentinel sees a replica it can promote), then waits
    /// until every live sentinel names the other data node as master and it answers `ROLE`
    /// as master. Returns its port. The old master is re-pointed later by the sentinels:
    /// [`wait_until_replica`](Self::wait_until_replica).
    pub fn failover(&self) -> u16 {
        let (old, new) = (self.master_port(), self.replica_port());
        let sentinel = self.wait_promotable(old, new);
        wait_for("SENTINEL FAILOVER to be accepted", TIMEOUT, || {
            // NOGOODSLAVE or INPROG until the sentinel's view allows it.
            query::<()>(
                sentinel,
                None,
                redis::cmd("SENTINEL").arg("FAILOVER").arg(&self.name),
            )
            .map_err(|e| e.to_string())
        });
        self.wait_master(new);
        new
    }

    /// SIGKILLs the current master and waits until the sentinels promote the replica (as in
    /// [`failover`](Self::failover)). Returns the new master's port.
    pub fn kill_master(&mut self) -> u16 {
        let (old, new) = (self.master_port(), self.replica_port());
        self.wait_promotable(old, new);
        self.data
            .iter_mut()
            .find(|n| n.port() == old)
            .expect("master is a data node")
            .kill();
        self.wait_master(new);
        new
    }

    /// Waits until the data node on `port` is a connected replica of the current master and
    /// every live sentinel sees it so (after a failover the sentinels re-point the old
    /// master within a few seconds).
    pub fn wait_until_replica(&self, port: u16) {
        wait_for("the node to replicate the current master", TIMEOUT, || {
            let master = self.master_port();
            match role(port, self.password())? {
                (r, Some(m), link) if r == "slave" && m == master && link == "connected" => {}
                other => return Err(format!("master {master}, {port}: ROLE {other:?}")),
            }
            for s in self.live_sentinels() {
                self.sentinel_sees(s, master, port)?;
            }
            Ok(())
        });
    }

    /// SIGSTOP the node (data node or sentinel) on `port` (see [`RedisNode::pause`]).
    pub fn stall(&self, port: u16) {
        self.node(port).pause();
    }

    /// SIGCONT the node on `port` after [`stall`](Self::stall).
    pub fn resume(&self, port: u16) {
        self.node(port).resume();
    }

    fn live_sentinels(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter(|n| n.is_running() && !n.is_paused())
            .map(RedisNode::port)
            .collect()
    }

    fn master_seen_by(&self, sentinel: u16) -> Result<u16, String> {
        let cmd = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .clone();
        let addr: Option<(String, u16)> = query(sentinel, None, &cmd).map_err(|e| e.to_string())?;
        addr.map(|(_, port)| port)
            .ok_or_else(|| format!("sentinel {sentinel} knows no master {}", self.name))
    }

    /// Does `sentinel` see `master` up as master, `replica` as its replica with the link ok,
    /// and the other sentinels?
    fn sentinel_sees(&self, sentinel: u16, master: u16, replica: u16) -> Result<(), String> {
        let seen = self.master_seen_by(sentinel)?;
        if seen != master {
            return Err(format!("sentinel {sentinel}: master {seen}"));
        }
        let state: HashMap<String, String> = query(
            sentinel,
            None,
            redis::cmd("SENTINEL").arg("MASTER").arg(&self.name),
        )
        .map_err(|e| e.to_string())?;
        let field = |k: &str| state.get(k).map(String::as_str).unwrap_or("");
        let others = (SENTINELS - 1).to_string();
        if field("flags") != "master" || field("num-other-sentinels") != others {
            return Err(format!(
                "sentinel {sentinel}: flags {}, other sentinels {}",
                field("flags"),
                field("num-other-sentinels")
            ));
        }
        let replicas: Vec<HashMap<String, String>> = query(
            sentinel,
            None,
            redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.name),
        )
        .map_err(|e| e.to_string())?;
        // `role-reported` too: a sentinel whose last INFO still showed the node as master
        // would "convert" it back to a replica if it saw it promoted before the new config.
        let good = replicas.iter().any(|r| {
            let is = |k: &str, v: &str| r.get(k).is_some_and(|x| x == v);
            is("port", &replica.to_string())
                && is("flags", "slave")
                && is("role-reported", "slave")
                && is("master-port", &master.to_string())
                && is("master-link-status", "ok")
        });
        if good {
            Ok(())
        } else {
            Err(format!("sentinel {sentinel}: replicas {replicas:?}"))
        }
    }

    /// Waits until every live sentinel sees `new` as a healthy replica of `old` (so none
    /// acts on a stale view once it is promoted); returns the first sentinel.
    fn wait_promotable(&self, old: u16, new: u16) -> u16 {
        wait_for("every sentinel to see the replica", TIMEOUT, || {
            let live = self.live_sentinels();
            for &s in &live {
                self.sentinel_sees(s, old, new)?;
            }
            live.first()
                .copied()
                .ok_or_else(|| "no live sentinel".to_owned())
        })
    }

    /// Waits until every live sentinel names `port` as master and it answers `ROLE` master.
    fn wait_master(&self, port: u16) {
        wait_for("the sentinels to name the new master", TIMEOUT, || {
            for s in self.live_sentinels() {
                let seen = self.master_seen_by(s)?;
                if seen != port {
                    return Err(format!("sentinel {s}: master {seen}"));
                }
            }
            match role(port, self.password())? {
                (r, _, _) if r == "master" => Ok(()),
                other => Err(format!("{port}: ROLE {other:?}")),
            }
        });
    }
}

fn args_of(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}
