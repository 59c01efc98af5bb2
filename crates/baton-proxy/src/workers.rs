//! The data plane's threads: one single-threaded tokio runtime per core, as nginx, HAProxy and
//! Envoy run one event loop per worker.
//!
//! A client connection is handed to one worker when it is accepted and stays there: its
//! requests, the backend connections they use (each worker has its own pool per backend, see
//! [`Backend`](crate::Backend)) and the response bodies all run on that one thread. A proxied
//! exchange then never wakes another thread, which on a work-stealing runtime it did about
//! once per request, each wake a syscall and often a context switch.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::runtime::Handle;

/// The process's data plane workers, started on first use.
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    /// Client connections it is serving now.
    connections: AtomicUsize,
}

thread_local! {
    /// `i + 1` on worker `i`'s thread, 0 elsewhere.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

static WORKERS: OnceLock<Workers> = OnceLock::new();

/// How many workers run: `BATON_PROXY_THREADS` if set to a positive number, else one per core.
fn configured_count() -> usize {
    std::env::var("BATON_PROXY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

impl Workers {
    /// The workers, starting them if this is the first call.
    pub(crate) fn get() -> &'static Workers {
        WORKERS.get_or_init(|| Workers::start(configured_count()))
    }

    fn start(count: usize) -> Workers {
        let workers = (0..count)
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start a proxy worker runtime");
                let handle = runtime.handle().clone();
                std::thread::Builder::new()
                    .name(format!("baton-proxy-{i}"))
                    .spawn(move || {
                        SLOT.with(|s| s.set(i + 1));
                        // Runs the tasks handed to it for the life of the process.
                        runtime.block_on(std::future::pending::<()>());
                    })
                    .expect("cannot start a proxy worker thread");
                Worker {
                    handle,
                    connections: AtomicUsize::new(0),
                }
            })
            .collect();
        Workers { workers }
    }

    /// Runs `connection` on the worker serving the fewest connections.
    pub(crate) fn spawn<F>(&'static self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.connections.load(Relaxed))
            .expect("at least one worker");
        worker.connections.fetch_add(1, Relaxed);
        let counted = Counted(&worker.connections);
        worker.handle.spawn(async move {
            let _counted = counted;
            connection.await;
        });
    }
}

/// One connection counted on a worker until dropped (also when its task panics).
struct Counted(&'static AtomicUsize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Number of per-backend pool slots: one per worker, plus one for other threads (health
/// checks never use pools, but tests and callers outside the workers may).
pub(crate) fn slots() -> usize {
    Workers::get().workers.len() + 1
}

/// The pool slot of the current thread.
pub(crate) fn current_slot() -> usize {
    SLOT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn connections_go_to_the_least_busy_worker_and_run_on_its_thread() {
        // A set of its own, not the process's: the test must see every connection.
        let workers: &'static Workers = Box::leak(Box::new(Workers::start(2)));
        let (slots_tx, slots_rx) = mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::broadcast::channel::<()>(1);
        for _ in 0..4 {
            let slots_tx = slots_tx.clone();
            let mut release = release_rx.resubscribe();
            workers.spawn(async move {
                slots_tx.send(current_slot()).unwrap();
                let _ = release.recv().await;
            });
        }
        let mut slots: Vec<usize> = (0..4)
            .map(|_| slots_rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .collect();
        slots.sort_unstable();
        assert_eq!(slots, [1, 1, 2, 2], "two connections on each worker");
        let counts = || -> Vec<usize> {
            workers
                .workers
                .iter()
                .map(|w| w.connections.load(Relaxed))
                .collect()
        };
        assert_eq!(counts(), [2, 2]);
        release_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while counts() != [0, 0] {
            assert!(std::time::Instant::now() < deadline, "{:?}", counts());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(current_slot(), 0, "not a worker thread");
    }
}
