//! One listener's live client connections, and the shutdown stages it signals each of them
//! (finish the request in flight, then close now).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// What a listener's shutdown asks of its client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    Serve = 0,
    /// Finish the request in flight, then close (keep-alive ends).
    Finish = 1,
    /// Close now.
    Close = 2,
}

/// One listener's live client connections, so that its shutdown reaches each of them.
///
/// A connection only touches state of its own while it serves (the shutdown signal is a
/// per-connection flag and `Notify`): a shared token or watch channel polled by every
/// connection on every wake-up is a lock all the workers' cores would take turns on.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    live: Mutex<Live>,
    /// Notified when the last connection has closed.
    empty: Notify,
}

#[derive(Debug, Default)]
struct Live {
    next_id: u64,
    signals: HashMap<u64, Arc<Signal>>,
}

#[derive(Debug)]
struct Signal {
    stage: AtomicU8,
    notify: Notify,
}

/// One registered connection: unregisters itself when dropped, wherever its task ends.
pub(crate) struct Client {
    clients: Arc<Clients>,
    id: u64,
    signal: Arc<Signal>,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(clients: &Arc<Clients>) -> Client {
        let signal = Arc::new(Signal {
            stage: AtomicU8::new(Stage::Serve as u8),
            notify: Notify::new(),
        });
        let mut live = clients.lock();
        let id = live.next_id;
        live.next_id += 1;
        live.signals.insert(id, signal.clone());
        Client {
            clients: clients.clone(),
            id,
            signal,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.lock().signals.len()
    }

    pub(crate) fn signal_all(&self, stage: Stage) {
        for signal in self.lock().signals.values() {
            signal.stage.fetch_max(stage as u8, SeqCst);
            // A permit if the connection is not waiting yet: the signal is never lost.
            signal.notify.notify_one();
        }
    }

    pub(crate) async fn all_closed(&self) {
        loop {
            let empty = self.empty.notified();
            tokio::pin!(empty);
            // Registered before the check, so a close between the check and the await is seen.
            empty.as_mut().enable();
            if self.lock().signals.is_empty() {
                return;
            }
            empty.await;
        }
    }
}

impl Client {
    /// The stage the listener has asked for so far.
    pub(crate) fn stage(&self) -> Stage {
        match self.signal.stage.load(SeqCst) {
            0 => Stage::Serve,
            1 => Stage::Finish,
            _ => Stage::Close,
        }
    }

    /// The stage after a signal: at least [`Stage::Finish`].
    pub(crate) fn signalled_stage(&self) -> Stage {
        match self.stage() {
            Stage::Close => Stage::Close,
            _ => Stage::Finish,
        }
    }

    /// The listener's signals, as a poll that can sit beside the connection's other waits.
    pub(crate) fn watch(&self) -> Watch<'_> {
        Watch {
            client: self,
            notified: Box::pin(self.signal.notify.notified()),
        }
    }
}

/// Watches one connection's signals (see [`Client::watch`]).
pub(crate) struct Watch<'a> {
    client: &'a Client,
    notified: Pin<Box<Notified<'a>>>,
}

impl Watch<'_> {
    /// Ready with the stage each time the listener signals.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Stage> {
        ready!(self.notified.as_mut().poll(cx));
        self.notified.set(self.client.signal.notify.notified());
        Poll::Ready(self.client.signalled_stage())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut live = self.clients.lock();
        live.signals.remove(&self.id);
        if live.signals.is_empty() {
            self.clients.empty.notify_waiters();
        }
    }
}
