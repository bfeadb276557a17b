//! One `redis-server` process of a topology: free-port retry, readiness, signals, cleanup.

use super::{info_field, query, wait_for};
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many ports a node tries before the harness gives up (each failure is a port race).
const PORT_ATTEMPTS: usize = 20;
/// How long a starting server may take to answer (a loaded 2-core CI machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How the harness proves that the server answering on a port is the one it started: the
/// `process_id` of `INFO server` must be the child's pid (another test may own the port).
pub(crate) enum Probe {
    Plain {
        password: Option<String>,
    },
    Tls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// A running `redis-server` (data node or sentinel) on `127.0.0.1`, in its own temp dir.
/// Killed (SIGKILL, with any fork it made) on drop.
pub struct RedisNode {
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    paused: AtomicBool,
}

/// The server process and its guard: `sh` leading the process group, which kills the whole
/// group (server and forks) when its stdin, held by the test process, closes.
struct Proc {
    server: Child,
    guard: Child,
}

/// The URLs of the nodes of `nodes` that still run (killed ones are left out).
pub fn running_urls(nodes: &[RedisNode]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.is_running())
        .map(RedisNode::url)
        .collect()
}

impl RedisNode {
    /// Starts a node, retrying on another port when the chosen one is taken. `args` builds
    /// the command line for a port and a fresh dir (it may write config files there);
    /// `cluster_bus` also reserves port + 10000, and keeps the port below 55000.
    pub(crate) fn spawn(
        what: &str,
        cluster_bus: bool,
        probe: &Probe,
        args: &dyn Fn(u16, &Path) -> Vec<OsString>,
    ) -> RedisNode {
        for _ in 0..PORT_ATTEMPTS {
            let port = candidate_port(cluster_bus);
            let dir = tempfile::tempdir().expect("temp dir");
            let proc = Proc::launch(&args(port, dir.path()), dir.path());
            let mut node = RedisNode {
                port,
                password: match probe {
                    Probe::Plain { password } => password.clone(),
                    Probe::Tls { .. } => None,
                },
                dir,
                proc: Some(proc),
                paused: AtomicBool::new(false),
            };
            if node.wait_ready(what, probe) {
                return node;
            }
        }
        panic!("{what}: no free port after {PORT_ATTEMPTS} attempts");
    }

    /// True when ready, false when the port was taken (the caller retries elsewhere).
    fn wait_ready(&mut self, what: &str, probe: &Probe) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let proc = self.proc.as_mut().expect("just launched");
            let pid = proc.server.id();
            if let Ok(Some(status)) = proc.server.try_wait() {
                let log = self.log();
                if log.contains("Address already in use") {
                    self.kill();
                    return false;
                }
                panic!("{what} on port {} exited ({status}):\n{log}", self.port);
            }
            if probe_pid(self.port, probe) == Some(pid) {
                return true;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what} on port {} did not answer within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>`, with `:<password>@` when the node has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.server.id())
    }

    /// Started and not killed (it may be paused).
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// SIGSTOP: the server stops answering (connections stay open) until [`resume`](Self::resume).
    /// Returns once the kernel reports the process stopped.
    pub fn pause(&self) {
        stop(self.pid().expect("pause: the node is not running"));
        self.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        cont(self.pid().expect("resume: the node is not running"));
        self.paused.store(false, Ordering::SeqCst);
    }

    /// SIGKILL (the server and any fork of it) and reap it; the port closes.
    pub fn kill(&mut self) {
        self.proc.take();
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The node's data dir (config files, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log and anything it printed, for failure messages.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("redis.log"))
    }

    /// The password the node requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl Proc {
    fn launch(args: &[OsString], dir: &Path) -> Proc {
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg("read _; kill -KILL 0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sh");
        let out = File::create(dir.join("stdout.log")).expect("log file");
        let server = Command::new("redis-server")
            .args(args)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .process_group(guard.id() as i32)
            .spawn();
        match server {
            Ok(server) => Proc { server, guard },
            Err(e) => {
                let _ = guard.kill();
                let _ = guard.wait();
                panic!("redis-server (7.0+) must be on PATH: {e}");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.server.kill();
        // Closing the guard's stdin makes it SIGKILL the group: forks included.
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
        let _ = self.server.wait();
    }
}

/// The pid of whoever answers `INFO server` on the port, if anyone does.
fn probe_pid(port: u16, probe: &Probe) -> Option<u32> {
    let info = match probe {
        Probe::Plain { password } => {
            query::<String>(port, password.as_deref(), redis::cmd("INFO").arg("server")).ok()?
        }
        Probe::Tls { ca, cert, key } => {
            let out = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "INFO", "server"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    info_field(&info, "process_id")?.parse().ok()
}

/// A port (and, for a cluster node, port + 10000) that binds right now, in 20000..32000:
/// below the kernel's ephemeral range, and bus ports stay below 55000. Another process may
/// still take it before the server binds: [`RedisNode::spawn`] retries then.
fn candidate_port(cluster_bus: bool) -> u16 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && (!cluster_bus || free(port + 10_000)) {
            return port;
        }
    }
}

/// SIGSTOP `pid` and wait until the kernel reports it stopped.
pub(crate) fn stop(pid: u32) {
    signal(pid, "STOP");
    wait_for("the process to be stopped", Duration::from_secs(5), || {
        process_state(pid)
            .filter(|s| *s == 'T')
            .ok_or_else(|| format!("state {:?}", process_state(pid)))
    });
}

/// SIGCONT `pid` and wait until it is no longer stopped.
pub(crate) fn cont(pid: u32) {
    signal(pid, "CONT");
    wait_for(
        "the process to run again",
        Duration::from_secs(5),
        || match process_state(pid) {
            Some('T') | None => Err(format!("state {:?}", process_state(pid))),
            Some(_) => Ok(()),
        },
    );
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` for stopped, `Z`...).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn plain_args(port: u16, dir: &Path) -> Vec<OsString> {
        let port = port.to_string();
        let mut args: Vec<OsString> = ["--port", &port, "--bind", "127.0.0.1", "--save", ""]
            .map(OsString::from)
            .into();
        args.extend([OsString::from("--dir"), dir.into()]);
        args
    }

    #[test]
    fn a_taken_port_is_retried_on_another() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let attempts = AtomicUsize::new(0);
        // The first attempt is made to lose the race for its port.
        let args = |port: u16, dir: &Path| {
            let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
            plain_args(if first { taken_port } else { port }, dir)
        };
        let probe = Probe::Plain { password: None };
        let node = RedisNode::spawn("retry test", false, &probe, &args);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_ne!(node.port(), taken_port);
        let pong: String = query(node.port(), None, &redis::cmd("PING")).unwrap();
        assert_eq!(pong, "PONG");
    }

    #[test]
    fn a_dropped_node_is_gone_and_its_port_closed() {
        let probe = Probe::Plain { password: None };
        let node = RedisNode::spawn("drop test", false, &probe, &plain_args);
        let (pid, port) = (node.pid().unwrap(), node.port());
        node.pause();
        drop(node);
        assert_eq!(process_state(pid), None, "reaped");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn cluster_ports_leave_room_for_the_bus() {
        for _ in 0..100 {
            let port = candidate_port(true);
            assert!((20_000..32_000).contains(&port));
            assert!(TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok());
        }
    }
}
