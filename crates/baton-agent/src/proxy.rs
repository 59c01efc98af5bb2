//! The host's own proxy (`host_port`, docs/design-notes.md "Many hosts and containers"): for
//! each app with `host_port`, a listener on the host's address that routes to this host's
//! instances in the split the controller sent last. It keeps serving that split while the
//! controller is away (docs/DESIGN.md I8), health-checks the instances itself (I1), and lets
//! an instance's in-flight requests finish before the instance is stopped (I2).
//!
//! A split that changes an app's listener (its port, TLS, request timeout or head limit: a
//! `baton reload` on the controller) starts a new listener first (on the same socket when the
//! port stays, so no connection is refused) and then stops the old one, whose requests
//! finish; an app no longer in the split has its listener stopped the same way.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_core::config::CertConfig;
use baton_core::run::{HostApp, HostSplit, Running};
use baton_proxy::handoff::Sockets;
use baton_proxy::{
    AppRoute, Backend, Health, HealthCheck, ListenerConfig, ReleaseRoute, Router, RoutingTable,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lb::Endpoint;

struct Watched {
    backend: Arc<Backend>,
    checker: JoinHandle<()>,
}

/// What an app's listener was started with: a change means a new listener.
#[derive(Clone, PartialEq, Eq)]
struct ListenerKey {
    port: u16,
    tls: Vec<CertConfig>,
    request_timeout_ms: u64,
    max_header_bytes: usize,
}

impl ListenerKey {
    fn of(app: &HostApp) -> ListenerKey {
        ListenerKey {
            port: app.port,
            tls: app.tls.clone(),
            request_timeout_ms: app.request_timeout_ms,
            max_header_bytes: app.max_header_bytes,
        }
    }
}

/// An app's listener serving now.
struct Listening {
    key: ListenerKey,
    /// A copy of its socket, for a successor listener on the same port.
    socket: std::net::TcpListener,
    /// Stops it (its requests finish).
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Each app's listener.
    listeners: HashMap<String, Listening>,
    /// The backends in the current split, by instance id.
    backends: HashMap<String, Watched>,
    /// Backends that left the split, until their instance stops.
    leaving: HashMap<String, Watched>,
    /// Each `external_lb` app's health endpoint (`lb.rs`).
    endpoints: HashMap<String, Endpoint>,
    /// The listeners' tasks, which end once they closed and their requests finished.
    serving: Vec<JoinHandle<std::io::Result<()>>>,
}

/// The proxy of one host.
pub struct HostProxy {
    address: IpAddr,
    router: Arc<Router>,
    state: Mutex<State>,
    /// The listening sockets, by name, for a restart of the agent to hand over.
    sockets: Arc<Sockets>,
    /// Set when the listeners close (the agent handed over to a new process).
    closing: watch::Sender<bool>,
}

impl HostProxy {
    /// A proxy on `address` with no app yet; it listens on `sockets` (those a restarted
    /// agent handed over, where names and addresses match).
    pub fn new(address: IpAddr, sockets: Arc<Sockets>) -> HostProxy {
        HostProxy {
            address,
            router: Router::new(),
            state: Mutex::new(State::default()),
            sockets,
            closing: watch::channel(false).0,
        }
    }

    /// Stops accepting on every listener, lets their requests finish, and closes the health
    /// endpoints: a new agent serves the same sockets.
    pub async fn close(&self) {
        let _ = self.closing.send(true);
        let (serving, endpoints) = {
            let mut state = self.lock();
            (
                std::mem::take(&mut state.serving),
                std::mem::take(&mut state.endpoints),
            )
        };
        drop(endpoints);
        for task in serving {
            let _ = task.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `split` from now on: binds the listeners of new apps, watches new instances,
    /// and publishes the table in one swap; instances that left start draining.
    pub async fn apply(&self, split: &HostSplit, running: &[Running]) {
        // Every new listener starts before any old one stops, and takes the socket of the
        // listener that has its port now, whichever app that is (a port kept, or handed
        // from one app to another, or two apps swapping theirs): no bind error, no gap.
        let sockets: Vec<(u16, std::net::TcpListener)> = self
            .lock()
            .listeners
            .values()
            .filter_map(|l| Some((l.key.port, l.socket.try_clone().ok()?)))
            .collect();
        let mut replaced = Vec::new();
        for app in &split.apps {
            let key = ListenerKey::of(app);
            let serving = self.lock().listeners.get(&app.app).map(|l| l.key.clone());
            if serving.as_ref() != Some(&key) {
                let socket = sockets.iter().find(|(port, _)| *port == key.port);
                replaced.extend(self.listen(app, socket.map(|(_, s)| s)).await);
            }
        }
        for old in replaced {
            let _ = old.stop.send(true);
        }
        self.stop_listeners_not_in(split);
        self.endpoints(split).await;
        let mut state = self.lock();
        let mut table = RoutingTable::default();
        let mut wanted = HashMap::new();
        for app in &split.apps {
            let mut releases = Vec::new();
            for r in &app.releases {
                let mut backends = Vec::new();
                for id in &r.instances {
                    let Some(run) = running.iter().find(|x| &x.instance == id) else {
                        continue;
                    };
                    let watched = match state.backends.remove(id) {
                        Some(w) => w,
                        None => self.watch(app, run),
                    };
                    backends.push(watched.backend.clone());
                    wanted.insert(id.clone(), watched);
                }
                releases.push(ReleaseRoute {
                    release: r.release.clone(),
                    weight: r.weight,
                    backends,
                });
            }
            let route = AppRoute {
                releases,
                affinity: None,
                mirror: None,
            };
            table.apps.insert(app.app.clone(), route);
        }
        for (id, gone) in std::mem::replace(&mut state.backends, wanted) {
            gone.backend.start_drain();
            state.leaving.insert(id, gone);
        }
        // The app's breakers and outlier ejection, as on the controller's listener (an
        // unchanged breaker keeps its state).
        let mut flags = baton_proxy::FlagTable::new();
        for app in &split.apps {
            self.router.set_breakers(&app.app, &app.breakers);
            self.router.set_outlier(&app.app, app.outlier.as_ref());
            if let Some(f) = &app.flags {
                flags.insert(app.app.clone(), Arc::new(app_flags(f)));
            }
        }
        // The flags first: a request routed by the new table sees the flags sent with it.
        self.router.publish_flags(flags);
        self.router.publish(table);
    }

    /// Opens, updates and closes the apps' load-balancer health endpoints.
    async fn endpoints(&self, split: &HostSplit) {
        let wanted: HashMap<&str, _> = split
            .apps
            .iter()
            .filter_map(|a| a.lb.map(|lb| (a.app.as_str(), lb)))
            .collect();
        self.lock().endpoints.retain(|app, ep| {
            let keep = wanted
                .get(app.as_str())
                .is_some_and(|lb| lb.port == ep.port);
            if !keep {
                self.sockets.close(&crate::lb::socket_name(app));
            }
            keep
        });
        for (app, lb) in wanted {
            if let Some(ep) = self.lock().endpoints.get(app) {
                ep.set_passing(lb.passing);
                continue;
            }
            let bound = Endpoint::bind(
                &self.sockets,
                self.address,
                lb.port,
                app,
                self.router.clone(),
                lb.passing,
            )
            .await;
            match bound {
                Ok(ep) => {
                    self.lock().endpoints.insert(app.to_string(), ep);
                }
                Err(e) => {
                    tracing::error!(app, port = lb.port, error = %e, "cannot listen for the load balancer's health checks");
                }
            }
        }
    }

    /// Every breaker transition of the host's listeners; `None` after the first call.
    pub fn breaker_transitions(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<baton_proxy::BreakerTransition>> {
        self.router.breaker_transitions()
    }

    /// The requests each app's listener received since the agent started.
    pub fn served(&self) -> BTreeMap<String, u64> {
        self.lock()
            .listeners
            .keys()
            .map(|app| (app.clone(), self.router.requests(app)))
            .collect()
    }

    /// A backend for an instance the controller put in the split: it already passed the
    /// controller's checks, so it starts healthy; this host's checks take it out if it fails.
    fn watch(&self, app: &HostApp, run: &Running) -> Watched {
        // This host's instances listen on loopback (only the tunnel leads to them from outside).
        let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, run.port));
        let backend = Backend::new(
            run.instance.clone(),
            run.release.clone(),
            addr,
            app.health.unhealthy_threshold,
        );
        backend.set_health(Health::Healthy);
        let check = HealthCheck {
            path: app.health.path.clone(),
            interval: Duration::from_millis(app.health.interval_ms),
            timeout: Duration::from_millis(app.health.timeout_ms),
            healthy_threshold: app.health.healthy_threshold,
            unhealthy_threshold: app.health.unhealthy_threshold,
        };
        let checker = baton_proxy::spawn_health_checker(backend.clone(), check);
        Watched { backend, checker }
    }

    /// Stops the listeners of apps that are no longer in `split` (their `host_port` went, or
    /// this host left their `hosts`); their requests finish.
    fn stop_listeners_not_in(&self, split: &HostSplit) {
        let mut state = self.lock();
        let gone: Vec<String> = state
            .listeners
            .keys()
            .filter(|app| !split.apps.iter().any(|a| &a.app == *app))
            .cloned()
            .collect();
        for app in gone {
            if let Some(old) = state.listeners.remove(&app) {
                tracing::info!(app = %app, port = old.key.port, "host proxy listener closed: the app no longer has host_port here");
                self.sockets.close(&socket_name(&app));
                let _ = old.stop.send(true);
                self.router.set_breakers(&app, &[]);
                self.router.set_outlier(&app, None);
            }
        }
        state.serving.retain(|task| !task.is_finished());
    }

    /// Starts `app`'s listener, on a copy of `socket` (a listener's now, on the same port)
    /// when given, else on a socket of its own; returns the app's listener it replaces, for
    /// the caller to stop once every new one listens.
    async fn listen(
        &self,
        app: &HostApp,
        socket: Option<&std::net::TcpListener>,
    ) -> Option<Listening> {
        let addr = SocketAddr::new(self.address, app.port);
        let name = socket_name(&app.app);
        // An HTTPS app's listener never serves plain HTTP: without its certificates (they
        // must be on this host at the controller's paths), no listener; the next split tries
        // again.
        let tls = if app.tls.is_empty() {
            None
        } else {
            match baton_proxy::Tls::load(app.tls.clone()) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::error!(app = %app.app, listen = %addr, error = %e, "cannot serve host_port over TLS: its certificate must be on this host");
                    return None;
                }
            }
        };
        let bound = match socket {
            Some(socket) => self.reuse_socket(socket, &name, addr),
            None => self.sockets.listen(&name, addr).await,
        };
        let socket = bound.and_then(|listener| {
            let copy = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
            Ok((listener, copy))
        });
        match socket {
            Ok((listener, socket)) => {
                tracing::info!(app = %app.app, listen = %addr, tls = !app.tls.is_empty(), "host proxy listening");
                let (stop, mut stopped) = watch::channel(false);
                let replaced = self.lock().listeners.insert(
                    app.app.clone(),
                    Listening {
                        key: ListenerKey::of(app),
                        socket,
                        stop,
                    },
                );
                let cfg = ListenerConfig {
                    request_timeout: Duration::from_millis(app.request_timeout_ms),
                    max_header_bytes: app.max_header_bytes,
                    tls,
                    // The split sent to hosts has no drain timeout: the default's.
                    ..ListenerConfig::default()
                };
                let mut closing = self.closing.subscribe();
                let serve = baton_proxy::serve(
                    listener,
                    app.app.clone(),
                    self.router.clone(),
                    cfg,
                    async move {
                        tokio::select! {
                            _ = closing.wait_for(|c| *c) => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        }
                    },
                );
                self.lock().serving.push(tokio::spawn(serve));
                if let Some(old) = &replaced {
                    tracing::info!(app = %app.app, old_port = old.key.port, "host proxy listener replaced");
                }
                replaced
            }
            Err(e) => {
                tracing::error!(app = %app.app, listen = %addr, error = %e, "cannot listen for host_port");
                None
            }
        }
    }

    /// A second listener on `socket` (a listener's now, on the same port), offered under
    /// `name` for a hand-over from now on.
    fn reuse_socket(
        &self,
        socket: &std::net::TcpListener,
        name: &str,
        addr: SocketAddr,
    ) -> std::io::Result<tokio::net::TcpListener> {
        let copy = socket.try_clone()?;
        copy.set_nonblocking(true)?;
        self.sockets.offer_as(name, addr, &copy)?;
        tokio::net::TcpListener::from_std(copy)
    }

    /// Before an instance stops: no new request, and up to `timeout` for those in flight.
    pub async fn drain(&self, instance: &str, timeout: Duration) {
        let watched: Vec<Watched> = {
            let mut state = self.lock();
            [
                state.leaving.remove(instance),
                state.backends.remove(instance),
            ]
            .into_iter()
            .flatten()
            .collect()
        };
        for w in watched {
            w.backend.start_drain();
            if !w.backend.wait_idle(timeout).await {
                tracing::warn!(
                    instance,
                    "requests still in flight on the host proxy; stopping anyway"
                );
            }
            w.backend.close_idle_connections();
            w.checker.abort();
        }
    }
}

/// The hand-over name of `app`'s listening socket.
fn socket_name(app: &str) -> String {
    format!("host:{app}")
}

/// An app's flags from the split, as the proxy evaluates them (`X-Baton-Flags`).
fn app_flags(f: &baton_core::run::HostFlags) -> baton_proxy::AppFlags {
    baton_proxy::AppFlags {
        key_header: f.key_header.as_deref().and_then(|h| h.parse().ok()),
        key_cookie: f.key_cookie.clone(),
        flags: f
            .flags
            .iter()
            .map(|x| (x.name.clone(), x.spec.clone(), x.forced_off.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, port: u16) -> HostApp {
        HostApp {
            app: name.to_string(),
            port,
            health: baton_core::run::HostHealth {
                path: "/health".into(),
                interval_ms: 1000,
                timeout_ms: 1000,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            },
            request_timeout_ms: 5000,
            max_header_bytes: 16 * 1024,
            releases: Vec::new(),
            lb: None,
            tls: Vec::new(),
            breakers: Vec::new(),
            outlier: None,
            flags: None,
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Sends one request to `port` and waits for its answer (a 503: no instance).
    async fn ask(port: u16) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok(())
    }

    /// Which app's listener is on `port`: the one whose request count grows.
    async fn app_on(proxy: &HostProxy, port: u16) -> String {
        let before = proxy.served();
        ask(port).await.unwrap();
        let after = proxy.served();
        let grew: Vec<_> = after
            .iter()
            .filter(|(app, n)| before.get(*app) != Some(n))
            .map(|(app, _)| app.clone())
            .collect();
        assert_eq!(grew.len(), 1, "{before:?} {after:?}");
        grew[0].clone()
    }

    /// Waits until `port` is `want`'s: a replaced listener may still take a connection in the
    /// moment after it was told to stop.
    async fn wait_app_on(proxy: &HostProxy, port: u16, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app_on(proxy, port).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{port} never {want}'s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn ports_handed_between_apps_keep_listening_and_a_removed_one_closes() {
        let proxy = HostProxy::new(
            IpAddr::from([127, 0, 0, 1]),
            Arc::new(baton_proxy::handoff::Sockets::default()),
        );
        let (p1, p2) = (free_port(), free_port());
        let split = |apps: Vec<HostApp>| HostSplit { apps };
        proxy
            .apply(&split(vec![app("a", p1), app("b", p2)]), &[])
            .await;
        assert_eq!(app_on(&proxy, p1).await, "a");
        assert_eq!(app_on(&proxy, p2).await, "b");
        // The two apps swap their ports: both keep answering, each now the other's.
        proxy
            .apply(&split(vec![app("a", p2), app("b", p1)]), &[])
            .await;
        wait_app_on(&proxy, p1, "b").await;
        wait_app_on(&proxy, p2, "a").await;
        // `a` is renamed `c` on the same port; `b` loses its host_port.
        proxy.apply(&split(vec![app("c", p2)]), &[]).await;
        wait_app_on(&proxy, p2, "c").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while ask(p1).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "{p1} still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
