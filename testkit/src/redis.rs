//! Redis for tests: a unique key prefix on the shared server, or a private server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared Redis (`VIGIL_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/0`).
pub fn shared_url() -> String {
    std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A key prefix no other test (or rerun) uses: `vigil-test:<name>:<uuid>`.
pub fn unique_prefix(name: &str) -> String {
    format!("vigil-test:{name}:{}", uuid::Uuid::new_v4().simple())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private `redis-server` on a free port, for tests that stop, restart or stall Redis.
/// Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server; with `aof`, writes are persisted (`appendfsync always`) so a restart
    /// keeps every acknowledged write.
    ///
    /// A port is picked by binding port 0 and releasing it, so another process may take it
    /// before the server binds it: the server is only accepted once it answers with its own
    /// data folder, and a lost race is retried on another port.
    pub fn start(aof: bool) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            aof,
            child: None,
        };
        for _ in 0..10 {
            if server.try_spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server: no free port after 10 attempts");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--maxmemory-policy")
            .arg("noeviction")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.aof {
            cmd.arg("--appendonly")
                .arg("yes")
                .arg("--appendfsync")
                .arg("always");
        } else {
            cmd.arg("--appendonly").arg("no");
        }
        self.child = Some(cmd.spawn().expect("redis-server must be installed"));
    }

    /// Spawns on `self.port`: true once this server answers, false if it lost its port.
    fn try_spawn(&mut self) -> bool {
        self.launch();
        let ours = self.dir.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("just launched");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false; // exited: the port was taken
            }
            let dir: Result<Vec<String>, _> = crate::redis_topology::query(
                self.port,
                None,
                redis::cmd("CONFIG").arg("GET").arg("dir"),
            );
            match dir {
                Ok(d) if d.get(1).is_some_and(|d| same_dir(d, &ours)) => return true,
                Ok(_) => {
                    // Someone else's server answers on this port.
                    if let Some(mut c) = self.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return false;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        panic!("redis-server on port {} did not become ready", self.port);
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server could not take port {} again",
            self.port
        );
    }

    /// Kills the server (SIGKILL) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_until(false);
    }

    /// Starts it again on the same port (and, with AOF, the same data).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGSTOP: the server stops answering (connections stay open) until
    /// [`resume`](Self::resume), as a stalled Redis would. Returns once it is stopped.
    pub fn pause(&self) {
        let child = self.child.as_ref().expect("pause: the server is stopped");
        crate::redis_topology::node::stop(child.id());
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        let child = self.child.as_ref().expect("resume: the server is stopped");
        crate::redis_topology::node::cont(child.id());
    }

    /// The data folder (AOF files live here).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn wait_until(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let open = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if open == up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not become {}",
            self.port,
            if up { "ready" } else { "stopped" }
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether two paths name the same folder (redis reports its dir canonicalized).
fn same_dir(a: &str, b: &str) -> bool {
    let canon = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    canon(a) == canon(b)
}
