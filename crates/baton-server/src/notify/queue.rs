//! One webhook's bounded queue of undelivered events: pushed without waiting, taken in order
//! by that webhook's delivery task; when full, the oldest undelivered event gives way.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

/// One event ready to send: its id (for logs) and its JSON body, shared by every webhook.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// The event's id.
    pub id: i64,
    /// The serialized payload.
    pub body: Bytes,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// There was room.
    Queued,
    /// The queue was full: the oldest waiting event was dropped. `first` is true for the
    /// first drop since the delivery task last took an event, so a burst warns once.
    DroppedOldest {
        /// Whether this drop starts a new run of drops.
        first: bool,
    },
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Pending>,
    /// The delivery task holds an event it has not finished with.
    busy: bool,
    /// Events dropped since the delivery task last took one.
    dropped: u64,
}

/// A bounded FIFO with one consumer.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the delivery task when an event is pushed.
    pushed: Notify,
    /// Wakes flushes when the queue becomes empty and the task idle.
    drained: Notify,
}

impl Queue {
    /// A queue that holds at most `capacity` waiting events (at least one).
    pub fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::default(),
            capacity: capacity.max(1),
            pushed: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Adds an event at the back; never waits.
    pub fn push(&self, event: Pending) -> Pushed {
        let pushed = {
            let mut state = self.lock();
            let pushed = if state.waiting.len() >= self.capacity {
                state.waiting.pop_front();
                state.dropped += 1;
                Pushed::DroppedOldest {
                    first: state.dropped == 1,
                }
            } else {
                Pushed::Queued
            };
            state.waiting.push_back(event);
            pushed
        };
        self.pushed.notify_one();
        pushed
    }

    /// Waits for the oldest waiting event and takes it; the queue stays busy until [`Queue::done`].
    /// Also returns how many events were dropped since the last take.
    pub async fn take(&self) -> (Pending, u64) {
        loop {
            {
                let mut state = self.lock();
                if let Some(event) = state.waiting.pop_front() {
                    state.busy = true;
                    return (event, std::mem::take(&mut state.dropped));
                }
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.pushed.notified().await;
        }
    }

    /// The delivery task finished with the event it took (delivered or given up).
    pub fn done(&self) {
        let drained = {
            let mut state = self.lock();
            state.busy = false;
            state.waiting.is_empty()
        };
        if drained {
            self.drained.notify_waiters();
        }
    }

    /// Events waiting or being delivered.
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.waiting.len() + usize::from(state.busy)
    }

    /// Waits until nothing is waiting or being delivered.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `notify_waiters` right after it still wakes us.
            notified.as_mut().enable();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (every update is a single step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64) -> Pending {
        Pending {
            id,
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn takes_in_order_and_counts_pending() {
        let q = Queue::new(8);
        assert_eq!(q.push(event(1)), Pushed::Queued);
        assert_eq!(q.push(event(2)), Pushed::Queued);
        assert_eq!(q.pending(), 2);
        let (first, dropped) = q.take().await;
        assert_eq!((first.id, dropped), (1, 0));
        assert_eq!(q.pending(), 2, "the taken event is pending until done");
        q.done();
        assert_eq!(q.take().await.0.id, 2);
        q.done();
        assert_eq!(q.pending(), 0);
        q.drained().await;
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_reports_the_run() {
        let q = Queue::new(2);
        assert_eq!(q.push(event(1)), Pushed::Queued);
        assert_eq!(q.push(event(2)), Pushed::Queued);
        assert_eq!(q.push(event(3)), Pushed::DroppedOldest { first: true });
        assert_eq!(q.push(event(4)), Pushed::DroppedOldest { first: false });
        let (e, dropped) = q.take().await;
        assert_eq!((e.id, dropped), (3, 2));
        q.done();
        assert_eq!(q.push(event(5)), Pushed::Queued);
        assert_eq!(q.push(event(6)), Pushed::DroppedOldest { first: true });
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let q = std::sync::Arc::new(Queue::new(2));
        let taker = tokio::spawn({
            let q = q.clone();
            async move { q.take().await.0.id }
        });
        tokio::task::yield_now().await;
        q.push(event(7));
        assert_eq!(taker.await.unwrap(), 7);
    }
}
