//! The listening sockets of a process, by name and configured address: offered to a
//! successor, and, in a successor, those its predecessor offered until it takes them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use tokio::net::TcpListener;

/// One named listening socket.
pub(super) struct Named {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) fd: OwnedFd,
}

/// The listening sockets a process serves on, by name, so that a successor can take them;
/// and, in a successor, the ones its predecessor offered until it takes or drops them.
#[derive(Default)]
pub struct Sockets {
    state: Mutex<SocketsState>,
}

#[derive(Default)]
pub(super) struct SocketsState {
    /// Offered by the predecessor and not taken yet.
    pub(super) inherited: Vec<Named>,
    /// Serving now: a copy of each descriptor, offered to a successor.
    serving: Vec<Named>,
}

impl Sockets {
    pub(super) fn lock(&self) -> MutexGuard<'_, SocketsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A listener for `name` on `addr` (as configured: `127.0.0.1:0` stays that): the
    /// predecessor's socket if it offered one of that name and address, else a new one.
    pub async fn listen(&self, name: &str, addr: SocketAddr) -> io::Result<TcpListener> {
        let inherited = {
            let mut state = self.lock();
            let at = state
                .inherited
                .iter()
                .position(|n| n.name == name && n.addr == addr);
            at.map(|i| state.inherited.remove(i))
        };
        let listener = match inherited {
            Some(named) => {
                let std = std::net::TcpListener::from(named.fd);
                std.set_nonblocking(true)?;
                tracing::debug!(name, %addr, "listening on the socket handed over");
                TcpListener::from_std(std)?
            }
            None => TcpListener::bind(addr).await?,
        };
        let fd = listener.as_fd().try_clone_to_owned()?;
        let mut state = self.lock();
        state.serving.retain(|n| n.name != name);
        state.serving.push(Named {
            name: name.to_string(),
            addr,
            fd,
        });
        Ok(listener)
    }

    /// Offers `socket` (listening on `addr` as configured) under `name` from now on, in place
    /// of what `name` had: a socket that moved from one name to another.
    pub fn offer_as(&self, name: &str, addr: SocketAddr, socket: &impl AsFd) -> io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        let mut state = self.lock();
        state.serving.retain(|n| n.name != name);
        state.serving.push(Named {
            name: name.to_string(),
            addr,
            fd,
        });
        Ok(())
    }

    /// `name` is closed for good: not offered to a successor.
    pub fn close(&self, name: &str) {
        self.lock().serving.retain(|n| n.name != name);
    }

    /// Closes what the predecessor offered and this process did not take (a listener no
    /// longer in the config), and forgets every socket: after a hand-over the old process
    /// keeps none open beyond its own listeners' lives.
    pub fn close_unclaimed(&self) {
        self.lock().inherited.clear();
    }

    /// Forgets the sockets served now (the successor has them).
    pub fn forget_serving(&self) {
        self.lock().serving.clear();
    }

    /// The names of the sockets offered by the predecessor and not taken yet.
    pub fn unclaimed(&self) -> Vec<String> {
        self.lock()
            .inherited
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    pub(super) fn offer(&self) -> io::Result<Vec<Named>> {
        self.lock()
            .serving
            .iter()
            .map(|n| {
                Ok(Named {
                    name: n.name.clone(),
                    addr: n.addr,
                    fd: n.fd.try_clone()?,
                })
            })
            .collect()
    }
}
