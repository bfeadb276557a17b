//! A Redis Cluster of real nodes: start, slot owners, failover, kill, stall.

use super::node::{Probe, RedisNode};
use super::{info_field, query, role, value_int, wait_for};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long a cluster may take to become healthy (start, failover, promotion after a kill).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// `masters` masters with `replicas_per_master` replicas each, `--cluster-node-timeout 2000`.
/// Every node is killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
}

/// One range of `CLUSTER SLOTS`: slots `start..=end`, served by `master` (a port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SlotRange {
    start: u16,
    end: u16,
    master: u16,
    replicas: Vec<u16>,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create` and waits until every
    /// node reports `cluster_state:ok` with all 16384 slots assigned, every node agrees on the
    /// slot map and every replica's link is up. Needs `masters >= 3`.
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let total = masters * (1 + replicas_per_master);
        let args = |port: u16, dir: &Path| -> Vec<OsString> {
            let port = port.to_string();
            let mut args: Vec<OsString> = [
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                // CLUSTER SLOTS lists a replica only once its offset is known, which takes a
                // replication PING (default every 10 s) on an idle master.
                "--repl-ping-replica-period",
                "1",
                "--dir",
            ]
            .map(OsString::from)
            .into();
            args.push(dir.into());
            args
        };
        let probe = Probe::Plain { password: None };
        let nodes: Vec<RedisNode> = std::thread::scope(|s| {
            let starting: Vec<_> = (0..total)
                .map(|i| {
                    let (args, probe) = (&args, &probe);
                    s.spawn(move || {
                        RedisNode::spawn(&format!("cluster node {i}"), true, probe, args)
                    })
                })
                .collect();
            starting
                .into_iter()
                .map(|h| h.join().expect("cluster node start"))
                .collect()
        });
        let cluster = RedisCluster { nodes };
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.nodes.iter().map(RedisNode::addr))
            .args(["--cluster-replicas", &replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(|_| Ok(()));
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node still running (killed ones are left out).
    pub fn nodes(&self) -> Vec<String> {
        super::node::running_urls(&self.nodes)
    }

    /// `redis://127.0.0.1:<port>` of the current masters, as the cluster reports them.
    pub fn masters(&self) -> Vec<String> {
        let mut ports: Vec<u16> = self.slot_map().iter().map(|r| r.master).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The node on `port` (pid, log, pause...). Panics for a port not in the cluster.
    pub fn node(&self, port: u16) -> &RedisNode {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// `CLUSTER KEYSLOT <key>`.
    pub fn keyslot(&self, key: &str) -> u16 {
        let port = self.any_live_port();
        query::<u16>(port, None, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master serving `slot`, per `CLUSTER SLOTS` of a live node.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        owner(&self.slot_map(), slot).unwrap_or_else(|| panic!("slot {slot} has no master"))
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        self.master_of_slot(self.keyslot(key))
    }

    /// Ports of the replicas of the master on `master_port` (failed ones excluded).
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        self.slot_map()
            .into_iter()
            .find(|r| r.master == master_port)
            .map(|r| r.replicas)
            .unwrap_or_default()
    }

    /// SIGKILLs the master of `key`'s slot and waits until one of its replicas has been
    /// promoted: every live node reports `cluster_state:ok` and the slot on a new master.
    /// Returns the new master's port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let slot = self.keyslot(key);
        let old = self.master_of_slot(slot);
        assert!(
            !self.replicas_of(old).is_empty(),
            "the master of slot {slot} has no replica to promote"
        );
        self.node_mut(old).kill();
        let new = self.wait_healthy(|map| match owner(map, slot) {
            Some(p) if p != old => Ok(()),
            other => Err(format!("slot {slot} still on {other:?}")),
        });
        owner(&new, slot).expect("checked")
    }

    /// `CLUSTER FAILOVER` on a replica of `key`'s master, then waits until every live node
    /// reports `cluster_state:ok` with the slot on that replica, and the old master is its
    /// connected replica. Returns the new master's port.
    pub fn failover_master_of(&self, key: &str) -> u16 {
        let slot = self.keyslot(key);
        let old = self.master_of_slot(slot);
        let replica = wait_for(
            "a connected replica to fail over to",
            HEALTHY_TIMEOUT,
            || {
                let replicas = self.replicas_of(old);
                replicas
                    .iter()
                    .copied()
                    .find(|&r| {
                        let n = self.node(r);
                        !n.is_paused()
                            && role(r, None).is_ok_and(|(role, m, link)| {
                                role == "slave" && m == Some(old) && link == "connected"
                            })
                    })
                    .ok_or_else(|| format!("replicas of {old}: {replicas:?}"))
            },
        );
        let failover = || {
            query::<()>(replica, None, redis::cmd("CLUSTER").arg("FAILOVER"))
                .map_err(|e| format!("CLUSTER FAILOVER on {replica}: {e}"))
        };
        failover().unwrap_or_else(|e| panic!("{e}"));
        let mut sent = Instant::now();
        self.wait_healthy(|map| {
            // A manual failover not done within cluster-mf-timeout (5 s) is aborted: ask again.
            if sent.elapsed() > Duration::from_secs(6) {
                failover()?;
                sent = Instant::now();
            }
            if owner(map, slot) != Some(replica) {
                return Err(format!("slot {slot} on {:?}", owner(map, slot)));
            }
            match role(old, None)? {
                (r, Some(m), link) if r == "slave" && m == replica && link == "connected" => Ok(()),
                other => Err(format!("old master {old}: ROLE {other:?}")),
            }
        });
        replica
    }

    /// SIGSTOP the node on `port` (see [`RedisNode::pause`]).
    pub fn stop(&self, port: u16) {
        self.node(port).pause();
    }

    /// SIGCONT the node on `port` after [`stop`](Self::stop).
    pub fn cont(&self, port: u16) {
        self.node(port).resume();
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisNode {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// Ports of nodes that run and are not paused.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_paused())
            .map(RedisNode::port)
            .collect()
    }

    fn any_live_port(&self) -> u16 {
        *self.live_ports().first().expect("no live cluster node")
    }

    fn slot_map(&self) -> Vec<SlotRange> {
        slot_map(self.any_live_port()).expect("CLUSTER SLOTS")
    }

    /// Waits until every live node says `cluster_state:ok`, all slots are served, all live
    /// nodes agree on the slot map (masters and replicas), every master in it is a live node,
    /// every live replica's link is up and it is in the map, and `extra` accepts the map.
    /// Returns the map.
    fn wait_healthy(
        &self,
        mut extra: impl FnMut(&[SlotRange]) -> Result<(), String>,
    ) -> Vec<SlotRange> {
        wait_for("a healthy cluster", HEALTHY_TIMEOUT, || {
            let live = self.live_ports();
            let mut agreed: Option<Vec<SlotRange>> = None;
            let mut live_replicas = Vec::new();
            for &port in &live {
                let info: String = query(port, None, redis::cmd("CLUSTER").arg("INFO"))
                    .map_err(|e| format!("{port}: CLUSTER INFO: {e}"))?;
                for (field, want) in [
                    ("cluster_state", "ok".to_owned()),
                    ("cluster_slots_assigned", SLOTS.to_string()),
                    ("cluster_slots_ok", SLOTS.to_string()),
                    ("cluster_known_nodes", self.nodes.len().to_string()),
                ] {
                    let got = info_field(&info, field);
                    if got.as_deref() != Some(want.as_str()) {
                        return Err(format!("{port}: {field}:{got:?}"));
                    }
                }
                let map = slot_map(port)?;
                match &agreed {
                    None => agreed = Some(map),
                    Some(first) if *first != map => {
                        return Err(format!("{port} sees {map:?}, another node {first:?}"));
                    }
                    Some(_) => {}
                }
                let (role, _, link) = role(port, None)?;
                if role == "slave" {
                    if link != "connected" {
                        return Err(format!("replica {port}: link {link}"));
                    }
                    live_replicas.push(port);
                }
            }
            let map = agreed.ok_or("no live node")?;
            if let Some(r) = map.iter().find(|r| !live.contains(&r.master)) {
                return Err(format!(
                    "slots {}-{} on {} (not live)",
                    r.start, r.end, r.master
                ));
            }
            let mut listed: Vec<u16> = map.iter().flat_map(|r| r.replicas.clone()).collect();
            listed.sort_unstable();
            listed.dedup();
            live_replicas.sort_unstable();
            if listed != live_replicas {
                return Err(format!(
                    "replicas listed {listed:?}, live {live_replicas:?}"
                ));
            }
            extra(&map)?;
            Ok(map)
        })
    }
}

fn owner(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|r| (r.start..=r.end).contains(&slot))
        .map(|r| r.master)
}

/// `CLUSTER SLOTS` of one node, sorted by first slot.
fn slot_map(port: u16) -> Result<Vec<SlotRange>, String> {
    use redis::Value;
    let reply: Value = query(port, None, redis::cmd("CLUSTER").arg("SLOTS"))
        .map_err(|e| format!("{port}: CLUSTER SLOTS: {e}"))?;
    let bad = || format!("{port}: unexpected CLUSTER SLOTS reply");
    let Value::Array(ranges) = reply else {
        return Err(bad());
    };
    let node_port = |v: &Value| match v {
        Value::Array(node) => node.get(1).and_then(value_int).map(|p| p as u16),
        _ => None,
    };
    let mut map = Vec::new();
    for range in &ranges {
        let Value::Array(items) = range else {
            return Err(bad());
        };
        let int = |i: usize| items.get(i).and_then(value_int).map(|v| v as u16);
        map.push(SlotRange {
            start: int(0).ok_or_else(bad)?,
            end: int(1).ok_or_else(bad)?,
            master: items.get(2).and_then(node_port).ok_or_else(bad)?,
            replicas: {
                let mut replicas: Vec<u16> = items.iter().skip(3).filter_map(node_port).collect();
                replicas.sort_unstable();
                replicas
            },
        });
    }
    map.sort_by_key(|r| r.start);
    Ok(map)
}
