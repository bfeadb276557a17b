//! The Redis topologies behave as the clients tested on them will expect: TLS refuses the
//! wrong CA and plain TCP, the cluster serves every slot and redirects, failovers move the
//! master, a paused server stops answering. Each step waits on a condition with a deadline.

use std::process::Output;
use std::time::{Duration, Instant};
use vigil_testkit::redis::RedisServer;
use vigil_testkit::redis_topology::{
    RedisCluster, SLOTS, SentinelOptions, SentinelSet, TlsAuthClients, TlsRedis, wait_for,
};

fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("url");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    con
}

fn run<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query(&mut connect(url))
}

fn set(url: &str, key: &str, value: &str) -> redis::RedisResult<()> {
    run(url, redis::cmd("SET").arg(key).arg(value))
}

fn get(url: &str, key: &str) -> Option<String> {
    run(url, redis::cmd("GET").arg(key)).expect("GET")
}

fn url_of(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn answered_pong(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout).trim() == "PONG"
}

#[test]
fn tls_needs_the_right_ca_and_a_trusted_client_certificate() {
    let started = Instant::now();
    let tls = TlsRedis::start(TlsAuthClients::Yes);
    eprintln!("TlsRedis up in {:?}", started.elapsed());
    assert_eq!(tls.url(), format!("rediss://127.0.0.1:{}/0", tls.port()));
    let (ca, wrong_ca) = (tls.ca_file(), tls.wrong_ca_file());
    let (cert, key) = (tls.client_cert_file(), tls.client_key_file());
    let (wrong_cert, wrong_key) = (tls.wrong_client_cert_file(), tls.wrong_client_key_file());
    let client = Some((cert.as_path(), key.as_path()));

    assert!(answered_pong(&tls.cli(&ca, client, &["PING"])));
    let out = tls.cli(&wrong_ca, client, &["PING"]);
    assert!(
        !answered_pong(&out),
        "a server certificate from an unknown CA was trusted"
    );
    let out = tls.cli(&ca, None, &["PING"]);
    assert!(
        !answered_pong(&out),
        "no client certificate, yet PING answered"
    );
    let out = tls.cli(&ca, Some((&wrong_cert, &wrong_key)), &["PING"]);
    assert!(
        !answered_pong(&out),
        "a client certificate from another CA was accepted"
    );

    // The TLS port speaks nothing but TLS (and there is no plain port: --port 0).
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}/0", tls.port())).unwrap();
    let answer = plain
        .get_connection_with_timeout(Duration::from_secs(1))
        .and_then(|mut con| {
            con.set_read_timeout(Some(Duration::from_secs(2)))?;
            redis::cmd("PING").query::<String>(&mut con)
        });
    assert!(
        answer.is_err(),
        "plain TCP to the TLS port answered {answer:?}"
    );
}

#[test]
fn tls_client_certificates_can_be_optional_or_not_asked_for() {
    let optional = TlsRedis::start(TlsAuthClients::Optional);
    let ca = optional.ca_file();
    assert!(answered_pong(&optional.cli(&ca, None, &["PING"])));
    let (cert, key) = (optional.client_cert_file(), optional.client_key_file());
    assert!(answered_pong(&optional.cli(
        &ca,
        Some((&cert, &key)),
        &["PING"]
    )));
    let (cert, key) = (
        optional.wrong_client_cert_file(),
        optional.wrong_client_key_file(),
    );
    let out = optional.cli(&ca, Some((&cert, &key)), &["PING"]);
    assert!(
        !answered_pong(&out),
        "optional still rejects an untrusted certificate"
    );

    let none = TlsRedis::start(TlsAuthClients::No);
    assert!(answered_pong(&none.cli(&none.ca_file(), None, &["PING"])));
    assert!(!answered_pong(&none.cli(
        &none.wrong_ca_file(),
        None,
        &["PING"]
    )));
}

#[test]
fn a_paused_redis_server_stops_answering_until_resumed() {
    let server = RedisServer::start(false);
    let mut con = connect(&server.url());
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).unwrap(),
        "PONG"
    );
    con.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    server.pause();
    let answer = redis::cmd("PING").query::<String>(&mut con);
    assert!(answer.is_err(), "a stopped server answered {answer:?}");
    server.resume();
    assert_eq!(
        run::<String>(&server.url(), &redis::cmd("PING")).unwrap(),
        "PONG"
    );
}

/// Every range of `CLUSTER SLOTS` of the node at `url`, sorted.
fn slot_ranges(url: &str) -> Vec<(i64, i64)> {
    let ranges: Vec<redis::Value> = run(url, redis::cmd("CLUSTER").arg("SLOTS")).unwrap();
    let mut out: Vec<(i64, i64)> = ranges
        .iter()
        .map(|r| match r {
            redis::Value::Array(items) => match (&items[0], &items[1]) {
                (redis::Value::Int(a), redis::Value::Int(b)) => (*a, *b),
                other => panic!("slot range {other:?}"),
            },
            other => panic!("CLUSTER SLOTS entry {other:?}"),
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn the_cluster_serves_every_slot_and_redirects_to_the_owner() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    eprintln!("RedisCluster 3+3 up in {:?}", started.elapsed());
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    for url in cluster.nodes() {
        let ranges = slot_ranges(&url);
        let mut next = 0;
        for (start, end) in ranges {
            assert_eq!(start, next, "{url}: gap or overlap before slot {start}");
            next = end + 1;
        }
        assert_eq!(next, i64::from(SLOTS), "{url}: slots end at {next}");
    }

    let key = "vigil:topology:routed";
    let slot = cluster.keyslot(key);
    let owner = cluster.master_of(key);
    set(&url_of(owner), key, "here").expect("SET on the owner");
    assert_eq!(get(&url_of(owner), key).as_deref(), Some("here"));
    for other in cluster
        .masters()
        .into_iter()
        .filter(|u| *u != url_of(owner))
    {
        let err = set(&other, key, "there").expect_err("SET on a master that does not own it");
        assert_eq!(err.code(), Some("MOVED"), "{other}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("{slot} 127.0.0.1:{owner}")),
            "{other}: {err}"
        );
    }

    // A stopped node keeps its connections but answers nothing until it is continued.
    let mut con = connect(&url_of(owner));
    con.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    cluster.stop(owner);
    assert!(redis::cmd("PING").query::<String>(&mut con).is_err());
    cluster.cont(owner);
    assert_eq!(get(&url_of(owner), key).as_deref(), Some("here"));
}

#[test]
fn failover_and_a_killed_master_move_the_slot_to_a_replica() {
    let mut cluster = RedisCluster::start(3, 1);
    let key = "vigil:topology:failover";
    let first = cluster.master_of(key);
    set(&url_of(first), key, "v1").unwrap();

    let started = Instant::now();
    let second = cluster.failover_master_of(key);
    eprintln!("CLUSTER FAILOVER done in {:?}", started.elapsed());
    assert_ne!(second, first);
    assert_eq!(cluster.master_of(key), second);
    assert_eq!(
        get(&url_of(second), key).as_deref(),
        Some("v1"),
        "manual failover loses nothing"
    );
    let err = set(&url_of(first), key, "stale").expect_err("the old master is a replica now");
    assert_eq!(err.code(), Some("MOVED"), "{err}");
    assert_eq!(cluster.replicas_of(second), vec![first]);

    set(&url_of(second), key, "v2").unwrap();
    let acked: i64 = run(&url_of(second), redis::cmd("WAIT").arg(1).arg(5000)).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged v2");
    let started = Instant::now();
    let third = cluster.kill_master_of(key);
    eprintln!(
        "promotion after SIGKILL of a master in {:?}",
        started.elapsed()
    );
    assert_eq!(third, first, "its only replica took over");
    assert_eq!(get(&url_of(third), key).as_deref(), Some("v2"));
    assert_eq!(cluster.nodes().len(), 5);
}

#[test]
fn sentinels_name_the_master_and_the_replica_follows_it() {
    let started = Instant::now();
    let set_ = SentinelSet::start();
    eprintln!("SentinelSet up in {:?}", started.elapsed());
    let (master, replica) = (set_.master_port(), set_.replica_port());
    assert_eq!([master, replica], set_.data_ports());
    assert_eq!(set_.sentinel_urls().len(), 3);
    for sentinel in set_.sentinel_urls() {
        let addr: (String, u16) = run(
            &sentinel,
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(set_.master_name()),
        )
        .unwrap();
        assert_eq!(addr, ("127.0.0.1".to_owned(), master), "{sentinel}");
    }

    set(&url_of(master), "greeting", "hello").unwrap();
    wait_for(
        "the write to reach the replica",
        Duration::from_secs(10),
        || match get(&url_of(replica), "greeting") {
            Some(v) if v == "hello" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let err = set(&url_of(replica), "greeting", "bye").expect_err("replicas are read-only");
    assert_eq!(err.code(), Some("READONLY"), "{err}");
}

#[test]
fn a_sentinel_failover_swaps_roles_and_the_old_master_turns_read_only() {
    let set_ = SentinelSet::start();
    let old = set_.master_port();
    let started = Instant::now();
    let new = set_.failover();
    eprintln!("SENTINEL FAILOVER promoted in {:?}", started.elapsed());
    assert_ne!(new, old);
    assert_eq!(set_.master_port(), new);
    let role: Vec<redis::Value> = run(&url_of(new), &redis::cmd("ROLE")).unwrap();
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));

    set_.wait_until_replica(old);
    eprintln!("old master re-pointed after {:?}", started.elapsed());
    let err = set(&url_of(old), "k", "v").expect_err("the old master is a replica now");
    assert_eq!(err.code(), Some("READONLY"), "{err}");
    set(&url_of(new), "k", "v").expect("the new master takes writes");
    wait_for(
        "the old master to replicate the new one",
        Duration::from_secs(10),
        || get(&url_of(old), "k").ok_or_else(|| "not yet".to_owned()),
    );

    let started = Instant::now();
    assert_eq!(set_.failover(), old, "a second failover goes back");
    eprintln!("failover back promoted in {:?}", started.elapsed());
    assert_eq!(set_.master_port(), old);
}

#[test]
fn sentinels_promote_the_replica_when_a_password_protected_master_dies() {
    let mut set_ = SentinelSet::start_with(SentinelOptions {
        password: Some("s3cret".to_owned()),
        ..SentinelOptions::default()
    });
    let old = set_.master_port();
    let err = run::<String>(&url_of(old), &redis::cmd("PING")).expect_err("a password is needed");
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");

    let started = Instant::now();
    let new = set_.kill_master();
    eprintln!(
        "sentinels promoted after SIGKILL of the master in {:?}",
        started.elapsed()
    );
    assert_ne!(new, old);
    let url = set_.node(new).url();
    assert!(url.contains(":s3cret@"), "{url}");
    set(&url, "after", "kill").expect("the promoted replica takes writes");
    assert!(!set_.node(old).is_running());
}
