//! Stop signals, passed into startup and the running daemon (as mini-redis passes its
//! shutdown): the first SIGTERM or SIGINT asks for a graceful stop; a second one forces the
//! process out at once (exit code 130), for an operator who will not wait for the drain.

use tokio::sync::watch;

/// Exit code of a forced stop (the second signal), as a shell reports an interrupt.
pub const FORCED_EXIT: i32 = 130;

/// A handle that resolves once a stop was asked for. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    stop: watch::Receiver<bool>,
}

impl Shutdown {
    /// Listens for SIGTERM/SIGINT. The first asks for a stop; the second logs and exits the
    /// process with [`FORCED_EXIT`] (leased jobs go back to their queue when the lease
    /// expires, as after a crash).
    pub fn from_signals() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        let mut signals = Signals::new();
        tokio::spawn(async move {
            signals.next().await;
            let _ = tx.send(true);
            signals.next().await;
            tracing::warn!(
                "second stop signal: exiting now without waiting; running jobs return to \
                 their queue when their lease expires"
            );
            std::process::exit(FORCED_EXIT);
        });
        Shutdown { stop: rx }
    }

    /// A shutdown triggered by `stop` (tests, embedding).
    pub fn from_channel(stop: watch::Receiver<bool>) -> Shutdown {
        Shutdown { stop }
    }

    /// Resolves once a stop was asked for (at once if it already was).
    pub async fn recv(&mut self) {
        // An error means the sender is gone: nobody can ask for a stop any more, so wait
        // forever rather than stopping by accident.
        if self.stop.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// SIGTERM and SIGINT, registered once so no signal between two waits is missed.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the next SIGTERM or SIGINT (Ctrl-C).
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
