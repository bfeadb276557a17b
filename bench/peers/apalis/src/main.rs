//! apalis-redis no-op drain, for bench/peers/run.sh.
//!
//!   drain PORT N CONCURRENCY
//!
//! What it measures, the same way `vigil bench` and the other peers do:
//! - enqueue N no-op jobs (argument: the job's index) with the storage's `push_bulk`
//!   (1,000 per call, one batch-push script each) into an empty queue, and move them from
//!   the scheduled set, where apalis-redis puts every job, to the active list (see
//!   [`promote`]: without it, 8,000 jobs or more never drain);
//! - then one apalis worker on that storage, `concurrency(C)` (apalis's in-flight limit for
//!   one worker), drains the backlog. The storage keeps apalis-redis's defaults (fetch
//!   batches of 10, results persisted, events published) except `lock_tasks(false)`: no
//!   per-task lease, as the jobs last far less than a heartbeat. The clock starts when
//!   the worker is started (its registration included) and stops when the handler has seen
//!   every one of the N indexes: process_jobs_per_s = N / drain time (the enqueue is not
//!   timed). The worker is then stopped, which writes the last acknowledgements;
//! - Redis CPU per job: INFO cpu (used_cpu_sys + used_cpu_user) before the enqueue and after
//!   the worker has stopped, divided by N.
//! - Checks: every index ran exactly once, and Redis's done set holds N jobs; otherwise it
//!   says what it saw on stderr and exits 1 (a lost job would leave the drain unfinished: it
//!   gives up after 900 s).
//!
//! Prints one JSON line.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use tokio::sync::Notify;

const QUEUE: &str = "bench";
const ENQUEUE_CHUNK: usize = 1000;
const DRAIN_LIMIT: Duration = Duration::from_secs(900);

/// What the handler records: which indexes ran, how many distinct and repeated.
struct Seen {
    ran: Vec<AtomicBool>,
    distinct: AtomicUsize,
    repeated: AtomicUsize,
    /// When the last distinct index ran.
    finished: OnceLock<Instant>,
    all: Notify,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn cpu_seconds(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64, Error> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> Result<f64, Error> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| format!("INFO cpu has no {name}"))?
            .trim()
            .parse::<f64>()
            .map_err(Into::into)
    };
    Ok(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// Moves the enqueued jobs from apalis-redis's scheduled set to its active list, 1,000 at a
/// time, as the worker's first fetch would have done in one go. apalis-redis 1.0.0 gives
/// every pushed job a run time (now at the earliest) and so puts it in the scheduled set;
/// its fetch script moves all due jobs to the active list with one `unpack` of their ids,
/// which Redis's Lua refuses above 7,999 values ("too many results to unpack"): the worker
/// stops with that error at its first fetch, and a backlog of 8,000 or more jobs enqueued
/// before it started is never drained. After this the fetch finds nothing due and takes the
/// active list as it is; the keys are as the fetch would have left them (ids in the same
/// order, the signal list set), and Redis's CPU for the move is counted (it runs between
/// the two INFO readings), its time is not (it is part of the enqueue here).
async fn promote(conn: &mut redis::aio::MultiplexedConnection, n: usize) -> Result<(), Error> {
    let (scheduled, active, signal) = (
        format!("{QUEUE}:scheduled"),
        format!("{QUEUE}:active"),
        format!("{QUEUE}:signal"),
    );
    let mut moved = 0;
    loop {
        let popped: Vec<(String, f64)> = redis::cmd("ZPOPMIN")
            .arg(&scheduled)
            .arg(ENQUEUE_CHUNK)
            .query_async(conn)
            .await?;
        if popped.is_empty() {
            break;
        }
        moved += popped.len();
        let mut push = redis::cmd("RPUSH");
        push.arg(&active);
        for (id, _) in &popped {
            push.arg(id);
        }
        push.query_async::<()>(conn).await?;
    }
    redis::pipe()
        .cmd("DEL")
        .arg(&signal)
        .ignore()
        .cmd("LPUSH")
        .arg(&signal)
        .arg(1)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    if moved != n {
        return Err(format!("{n} jobs enqueued, {moved} in the scheduled set").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("apalis-redis drain: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("usage: drain PORT N CONCURRENCY ({e})"))?;
    let [port, n, concurrency] = args[..] else {
        return Err("usage: drain PORT N CONCURRENCY".into());
    };
    if n == 0 || concurrency == 0 {
        return Err("N and CONCURRENCY must be at least 1".into());
    }
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut info = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?; // for INFO and the check only

    let config = Config::default().queue(QUEUE).lock_tasks(false);
    let mut storage: RedisStorage<u32> =
        RedisStorage::new(apalis_redis::connect(url.as_str()).await?).with_config(config);

    let cpu_before = cpu_seconds(&mut info).await?;
    for start in (0..n).step_by(ENQUEUE_CHUNK) {
        let chunk = (start..n.min(start + ENQUEUE_CHUNK))
            .map(|i| i as u32)
            .collect();
        storage
            .push_bulk(chunk)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
    }

    promote(&mut info, n).await?;

    let seen = Arc::new(Seen {
        ran: (0..n).map(|_| AtomicBool::new(false)).collect(),
        distinct: AtomicUsize::new(0),
        repeated: AtomicUsize::new(0),
        finished: OnceLock::new(),
        all: Notify::new(),
    });
    let handler_seen = seen.clone();
    let worker = WorkerBuilder::new("bench-drain")
        .backend(storage)
        .concurrency(concurrency)
        .build(move |i: u32, worker: WorkerContext| {
            let seen = handler_seen.clone();
            async move {
                match seen.ran.get(i as usize) {
                    Some(ran) if !ran.swap(true, Ordering::AcqRel) => {
                        if seen.distinct.fetch_add(1, Ordering::AcqRel) + 1 == seen.ran.len() {
                            let _ = seen.finished.set(Instant::now());
                            seen.all.notify_one();
                            let _ = worker.stop();
                        }
                    }
                    _ => {
                        seen.repeated.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        });

    let began = Instant::now();
    let mut running = tokio::spawn(worker.run());
    tokio::select! {
        biased;
        _ = seen.all.notified() => {}
        ended = &mut running => {
            return Err(format!(
                "the worker ended after {} of {n} jobs: {:?}",
                seen.distinct.load(Ordering::Acquire),
                ended.map_err(|e| e.to_string())?
            ).into());
        }
        _ = tokio::time::sleep(DRAIN_LIMIT) => {
            return Err(format!(
                "the drain did not finish in {} s: {} of {n} jobs ran",
                DRAIN_LIMIT.as_secs(),
                seen.distinct.load(Ordering::Acquire)
            ).into());
        }
    }
    let drained = *seen
        .finished
        .get()
        .ok_or("notified before the last job ran")?
        - began;
    running
        .await
        .map_err(|e| format!("the worker task: {e}"))?
        .map_err(|e| format!("the worker's shutdown: {e}"))?;
    let cpu_after = cpu_seconds(&mut info).await?;

    let repeated = seen.repeated.load(Ordering::Acquire);
    let done: usize = redis::cmd("SCARD")
        .arg(format!("{QUEUE}:done"))
        .query_async(&mut info)
        .await?;
    if repeated > 0 || done != n {
        return Err(format!(
            "{n} jobs enqueued: {repeated} ran more than once, Redis's done set holds {done}"
        )
        .into());
    }

    println!(
        "{{\"system\":\"apalis-redis\",\"version\":\"{}\",\"apalis\":\"{}\",\"n\":{n},\
         \"concurrency\":{concurrency},\"process_jobs_per_s\":{},\"redis_cpu_us_per_job\":{}}}",
        env!("APALIS_REDIS_VERSION"),
        env!("APALIS_VERSION"),
        (n as f64 / drained.as_secs_f64()).round(),
        ((cpu_after - cpu_before) * 1e7 / n as f64).round() / 10.0,
    );
    Ok(())
}
