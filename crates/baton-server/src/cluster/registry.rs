//! The hosts connected now: one session per host name, each with the queue of messages to
//! send it. A newer session of a host replaces (and closes) an older one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use baton_cluster::ControllerMsg;
use baton_core::model::Millis;
use tokio::sync::{mpsc, oneshot};

/// How many messages may wait for one host before its session is closed as too slow.
pub const QUEUE: usize = 256;

/// One connected host's session, as the rest of the controller sees it.
#[derive(Debug, Clone)]
pub struct HostLink {
    /// The session's generation: higher than every earlier session's of this host.
    pub generation: i64,
    /// The agent's version.
    pub version: String,
    /// Where the agent connected from.
    pub peer: SocketAddr,
    /// When the session began (unix ms).
    pub connected_at: Millis,
    /// When the last heartbeat arrived (unix ms).
    pub last_seen: Millis,
    tx: mpsc::Sender<ControllerMsg>,
}

/// Why a message could not be queued for a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The host has no session now.
    #[error("host {0} is not connected")]
    NotConnected(String),
    /// The host's queue was full: its session is being closed.
    #[error("host {0} is too slow to take messages: its session is closed, it will reconnect")]
    Slow(String),
}

/// Why the registry closes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closed {
    /// A newer session of the same host took its place.
    Replaced,
    /// Its queue was full.
    Slow,
}

struct Entry {
    link: HostLink,
    /// Closes the session when it is replaced or too slow.
    close: Option<oneshot::Sender<Closed>>,
}

/// The registry: host name -> its current session.
#[derive(Default)]
pub(super) struct Registry {
    hosts: Mutex<BTreeMap<String, Entry>>,
}

/// What a session holds to receive its messages and learn that it must close.
pub(super) struct Registered {
    pub rx: mpsc::Receiver<ControllerMsg>,
    pub closed: oneshot::Receiver<Closed>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds host `name`'s new session, closing an older one; `None` when a session of a
    /// higher generation is already registered (two sessions raced, and this one is stale).
    pub fn register(
        &self,
        name: &str,
        generation: i64,
        version: String,
        peer: SocketAddr,
        now: Millis,
    ) -> Option<Registered> {
        let mut hosts = self.lock();
        if hosts
            .get(name)
            .is_some_and(|e| e.link.generation > generation)
        {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (close, closed) = oneshot::channel();
        let link = HostLink {
            generation,
            version,
            peer,
            connected_at: now,
            last_seen: now,
            tx,
        };
        let entry = Entry {
            link,
            close: Some(close),
        };
        if let Some(mut old) = hosts.insert(name.to_string(), entry)
            && let Some(close) = old.close.take()
        {
            let _ = close.send(Closed::Replaced);
        }
        Some(Registered { rx, closed })
    }

    /// Removes host `name`'s session of `generation`, unless a newer one replaced it.
    pub fn unregister(&self, name: &str, generation: i64) {
        let mut hosts = self.lock();
        if hosts
            .get(name)
            .is_some_and(|e| e.link.generation == generation)
        {
            hosts.remove(name);
        }
    }

    /// Records a heartbeat of host `name`'s session of `generation`.
    pub fn seen(&self, name: &str, generation: i64, now: Millis) {
        if let Some(e) = self.lock().get_mut(name)
            && e.link.generation == generation
        {
            e.link.last_seen = now;
        }
    }

    pub fn get(&self, name: &str) -> Option<HostLink> {
        self.lock().get(name).map(|e| e.link.clone())
    }

    pub fn all(&self) -> Vec<(String, HostLink)> {
        self.lock()
            .iter()
            .map(|(n, e)| (n.clone(), e.link.clone()))
            .collect()
    }

    /// Queues `msg` for host `name`; returns the generation of the session it went to.
    pub fn send(&self, name: &str, msg: ControllerMsg) -> Result<i64, SendError> {
        let mut hosts = self.lock();
        let Some(e) = hosts.get_mut(name) else {
            return Err(SendError::NotConnected(name.to_string()));
        };
        match e.link.tx.try_send(msg) {
            Ok(()) => Ok(e.link.generation),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(close) = e.close.take() {
                    let _ = close.send(Closed::Slow);
                }
                Err(SendError::Slow(name.to_string()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(SendError::NotConnected(name.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.2:4000".parse().unwrap()
    }

    #[tokio::test]
    async fn a_newer_session_replaces_and_closes_the_older_one() {
        let r = Registry::default();
        let old = r.register("web-1", 1, "0.1.0".into(), peer(), 10).unwrap();
        let mut new = r.register("web-1", 2, "0.1.0".into(), peer(), 20).unwrap();
        // A stale session that registers late does not take over.
        assert!(r.register("web-1", 1, "0.1.0".into(), peer(), 21).is_none());
        assert_eq!(old.closed.await, Ok(Closed::Replaced));
        // The old session's unregister does not remove the new one.
        r.unregister("web-1", 1);
        assert_eq!(r.get("web-1").unwrap().generation, 2);
        assert_eq!(r.send("web-1", ControllerMsg::Heartbeat), Ok(2));
        assert_eq!(new.rx.recv().await, Some(ControllerMsg::Heartbeat));
        r.seen("web-1", 2, 30);
        assert_eq!(r.get("web-1").unwrap().last_seen, 30);
        r.unregister("web-1", 2);
        assert_eq!(
            r.send("web-1", ControllerMsg::Heartbeat),
            Err(SendError::NotConnected("web-1".into()))
        );
    }

    #[tokio::test]
    async fn a_host_whose_queue_is_full_is_closed_not_waited_for() {
        let r = Registry::default();
        let s = r.register("web-1", 1, "0.1.0".into(), peer(), 10).unwrap();
        for _ in 0..QUEUE {
            r.send("web-1", ControllerMsg::Heartbeat).unwrap();
        }
        assert_eq!(
            r.send("web-1", ControllerMsg::Heartbeat),
            Err(SendError::Slow("web-1".into()))
        );
        assert_eq!(s.closed.await, Ok(Closed::Slow));
    }
}
