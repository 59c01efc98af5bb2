//! The apps' listeners, one per unit (`app@env`): bound at start or by a reload, each with its
//! own accept loop that can stop (and drain its connections) without touching the others.
//!
//! Each listener keeps a duplicate of its socket, so a unit's accept loop can restart with new
//! proxy settings on the very same socket: the new loop accepts before the old one stops, and
//! no connection is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use baton_core::config::AppConfig;
use baton_proxy::handoff::Sockets;
use baton_proxy::{ListenerConfig, Router, Tls};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A unit's socket, bound but not yet accepting.
pub struct Bound {
    /// The socket (non-blocking).
    pub socket: std::net::TcpListener,
    /// The address as configured (`127.0.0.1:0` stays that): what a restart matches it by.
    pub addr: SocketAddr,
}

impl Bound {
    /// Listens on `addr` for unit `key` (`what` is named in the error): on the socket a
    /// restart handed over if it had that unit and address (`baton_proxy::handoff`), else on
    /// a new one; either way offered to the next restart.
    pub async fn bind(
        sockets: &Sockets,
        key: &str,
        addr: SocketAddr,
        what: &str,
    ) -> anyhow::Result<Bound> {
        let listener = sockets
            .listen(&socket_name(key), addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for {what}: is another baton (or another program) using it? change the address in the config"))?;
        let socket = listener
            .into_std()
            .context("cannot take over a bound socket")?;
        Ok(Bound { socket, addr })
    }

    /// Binds `addr` for `what` without offering it to a restart yet (a reload's new
    /// listener: [`Listeners::start`] offers it once the reload commits).
    pub async fn bind_unoffered(addr: SocketAddr, what: &str) -> anyhow::Result<Bound> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for {what}: is another baton (or another program) using it? change the address in the config"))?;
        let socket = listener
            .into_std()
            .context("cannot take over a bound socket")?;
        Ok(Bound { socket, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// One unit's running accept loop.
struct Serving {
    bound: Bound,
    cfg: ListenerConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Every unit's listener.
pub struct Listeners {
    router: Arc<Router>,
    /// Every listening socket of this process, offered to the next restart.
    sockets: Arc<Sockets>,
    serving: BTreeMap<String, Serving>,
    /// Accept loops told to stop whose connections may still be finishing.
    stopping: Vec<JoinHandle<std::io::Result<()>>>,
}

/// The name unit `key`'s socket is handed over under at a restart.
fn socket_name(key: &str) -> String {
    format!("app:{key}")
}

/// How the proxy treats a unit's clients, from its config and its certificates (`tls.rs`).
pub fn listener_config(app: &AppConfig, tls: Option<Arc<Tls>>) -> ListenerConfig {
    ListenerConfig {
        request_timeout: app.proxy.request_timeout.std(),
        max_header_bytes: app.proxy.max_header_bytes,
        tls,
        upgrade_grace: app.drain.timeout.std(),
    }
}

/// Whether two listener settings serve the same: the same limits and the same certificate
/// holder (new certificates in the same holder reach new handshakes without a restart).
fn same_settings(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    let same_tls = match (&a.tls, &b.tls) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    };
    a.request_timeout == b.request_timeout
        && a.max_header_bytes == b.max_header_bytes
        && a.upgrade_grace == b.upgrade_grace
        && same_tls
}

impl Listeners {
    /// No listeners yet; they route through `router`.
    pub fn new(router: Arc<Router>, sockets: Arc<Sockets>) -> Self {
        Self {
            router,
            sockets,
            serving: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    /// Unit `key`'s certificates, if its listener serves TLS.
    pub fn tls(&self, key: &str) -> Option<Arc<Tls>> {
        self.serving.get(key)?.cfg.tls.clone()
    }

    /// Each unit's address.
    pub fn addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.serving
            .iter()
            .filter_map(|(k, s)| Some((k.clone(), s.bound.local_addr().ok()?)))
            .collect()
    }

    /// The socket already listening on `addr`, duplicated, so a unit that takes over the
    /// address of one a reload moves or removes gets it without a gap or a bind error.
    pub fn take_over(&self, addr: SocketAddr) -> Option<Bound> {
        let s = self
            .serving
            .values()
            .find(|s| s.bound.local_addr().ok() == Some(addr))?;
        let socket = s.bound.socket.try_clone().ok()?;
        Some(Bound { socket, addr })
    }

    /// Starts accepting for unit `key` on `bound`. A listener the unit had is stopped (it
    /// drains) once the new one accepts.
    pub fn start(&mut self, key: &str, bound: Bound, cfg: ListenerConfig) -> anyhow::Result<()> {
        let socket = bound
            .socket
            .try_clone()
            .context("cannot duplicate a listening socket")?;
        // A socket taken over from a moved or removed unit is offered under this one's name.
        self.sockets
            .offer_as(&socket_name(key), bound.addr, &bound.socket)
            .context("cannot keep a listening socket for the next restart")?;
        socket.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(socket)
            .context("cannot register a listening socket")?;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(baton_proxy::serve(
            listener,
            key.to_string(),
            self.router.clone(),
            cfg.clone(),
            crate::daemon::wait_true(rx),
        ));
        let old = self.serving.insert(
            key.to_string(),
            Serving {
                bound,
                cfg,
                stop,
                task,
            },
        );
        if let Some(old) = old {
            self.retire(old);
        }
        Ok(())
    }

    /// Restarts unit `key`'s accept loop on the same socket when its proxy settings differ
    /// from `cfg`; true if it did.
    pub fn reconfigure(&mut self, key: &str, cfg: ListenerConfig) -> anyhow::Result<bool> {
        let Some(s) = self.serving.get(key) else {
            return Ok(false);
        };
        if same_settings(&s.cfg, &cfg) {
            return Ok(false);
        }
        let socket = s
            .bound
            .socket
            .try_clone()
            .context("cannot duplicate a listening socket")?;
        let addr = s.bound.addr;
        self.start(key, Bound { socket, addr }, cfg)?;
        Ok(true)
    }

    /// Stops unit `key`'s listener: it accepts no more, its in-flight requests finish in the
    /// background (bounded by its `request_timeout`).
    pub fn stop(&mut self, key: &str) {
        if let Some(s) = self.serving.remove(key) {
            self.sockets.close(&socket_name(key));
            self.retire(s);
        }
    }

    fn retire(&mut self, s: Serving) {
        let _ = s.stop.send(true);
        // The socket closes when the accept loop drops its copy: this one goes now.
        drop(s.bound);
        self.stopping.retain(|t| !t.is_finished());
        self.stopping.push(s.task);
    }

    /// Stops every listener and waits until their connections finished.
    pub async fn shutdown(mut self) {
        let keys: Vec<String> = self.serving.keys().cloned().collect();
        for key in keys {
            self.stop(&key);
        }
        for task in self.stopping {
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "proxy listener ended with an error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn connects(addr: SocketAddr) -> bool {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    }

    #[tokio::test]
    async fn new_proxy_settings_restart_the_accept_loop_on_the_same_socket() {
        let sockets = Arc::new(Sockets::default());
        let mut l = Listeners::new(Router::new(), sockets.clone());
        let bound = Bound::bind(
            &sockets,
            "web@production",
            "127.0.0.1:0".parse().unwrap(),
            "a test",
        )
        .await
        .unwrap();
        let addr = bound.local_addr().unwrap();
        l.start("web@production", bound, ListenerConfig::default())
            .unwrap();
        assert!(connects(addr).await);
        assert!(
            !l.reconfigure("web@production", ListenerConfig::default())
                .unwrap(),
            "same settings: untouched"
        );
        let shorter = ListenerConfig {
            request_timeout: Duration::from_secs(5),
            ..ListenerConfig::default()
        };
        assert!(l.reconfigure("web@production", shorter).unwrap());
        assert_eq!(l.addrs()["web@production"], addr);
        // The old loop is told to stop; the socket stays open for the new one.
        for task in std::mem::take(&mut l.stopping) {
            task.await.unwrap().unwrap();
        }
        assert!(connects(addr).await);
        // Another unit takes the address over without binding it again.
        assert!(l.take_over(addr).is_some());

        l.stop("web@production");
        for task in std::mem::take(&mut l.stopping) {
            task.await.unwrap().unwrap();
        }
        assert!(
            !connects(addr).await,
            "a stopped listener's socket is closed"
        );
        assert!(l.addrs().is_empty());
    }
}
