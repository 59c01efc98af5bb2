//! `baton up`: opens the store, binds the API and the apps' listeners, re-adopts instances,
//! and runs the proxies, the controller and the API until shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arc_swap::ArcSwap;
use baton_core::config::{Config, ConfigError, Driver, Unit};
use baton_core::model::LOCAL_HOST;
use baton_proxy::Router;
use baton_runtime::docker::Docker;
use baton_store::{ArtifactStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::handover::{Control, ControllerTask, Ending, Incoming};
use crate::listeners::{Bound, Listeners, listener_config};
use crate::notify::{Notifier, RetryPolicy};
use crate::reload::{Reloader, Reloads};
use crate::shared::{ConfigSnapshot, Shared};
use crate::{api, controller, handover, token};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}; create it or pass --config PATH")]
    Read {
        /// The path tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

/// Reads and validates a config file.
pub fn load_config(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::parse(&text, path)?;
    crate::notify::check_ca_files(&config, &text, path)?;
    Ok(config)
}

/// Where a running daemon listens, reported once it is ready.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The API's address.
    pub api: SocketAddr,
    /// Each app's proxy address.
    pub apps: BTreeMap<String, SocketAddr>,
    /// Where agents connect (`[cluster] listen`), if this Baton has a cluster.
    pub cluster: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The API token.
    pub token: String,
    /// Reloads the config file (what `baton reload` and SIGHUP do).
    pub reload: Reloader,
}

/// Runs Baton until `shutdown` resolves (or `baton stop`), then closes the listeners, lets
/// in-flight requests finish and stops every instance. `ready` receives the bound addresses.
///
/// Started by `baton restart` (`handover.rs`), it takes the listeners and the control plane
/// from the running process, and tells it why if it cannot.
pub async fn run(
    config_path: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: Option<oneshot::Sender<Daemon>>,
) -> anyhow::Result<()> {
    let command = handover::own_command()?;
    let mut incoming = Incoming::from_env().await?;
    let result = serve(config_path, config, shutdown, ready, &mut incoming, command).await;
    if let Err(e) = &result {
        incoming.failed(&format!("{e:#}")).await;
    }
    result
}

async fn serve(
    config_path: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: Option<oneshot::Sender<Daemon>>,
    incoming: &mut Incoming,
    (exe, args): (PathBuf, Vec<std::ffi::OsString>),
) -> anyhow::Result<()> {
    let fd_limit = raise_fd_limit();
    let data_dir = config.data_dir(config_path);
    // Only its owner may enter it: it holds the token, the database and the instance logs.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Instances run with their working directory inside the artifact, so every path handed to
    // them must be absolute.
    let data_dir = std::fs::canonicalize(&data_dir)
        .with_context(|| format!("cannot resolve data directory {}", data_dir.display()))?;
    // One daemon per data directory: two would both adopt and restart the same instances.
    // A new process of a restart takes the lock once the old one released it.
    incoming.check_data_dir(&data_dir)?;
    incoming.take().await?;
    let lock = lock_data_dir(&data_dir)?;
    let sockets = incoming.sockets.clone();
    let db = data_dir.join("baton.db");
    private_db_files(&db)?;
    let store = Store::open(&db).context("cannot open the store")?;
    let token = token::load_or_create(&data_dir).context("cannot create the API token")?;
    let read_token = token::load_or_create_read(&data_dir)
        .context("cannot create the dashboard's read-only token")?;

    let api_listener = bind(&sockets, "api", config.api.listen, "the API ([api] listen)").await?;
    let flags_listener = match &config.flags {
        Some(f) => Some(
            bind(
                &sockets,
                "flags",
                f.listen,
                "the OFREP listener ([flags] listen)",
            )
            .await?,
        ),
        None => None,
    };
    let snapshot = ConfigSnapshot::new(config, config_path);
    let router = Router::new();
    let flags = Arc::new(crate::flags::FlagBook::new(router.clone()));
    flags.set_config(snapshot.units.values());
    crate::flags::load_stored(&flags, &store).context("cannot read the feature flags")?;
    let mut app_listeners = Vec::new();
    for unit in snapshot.units.values() {
        let listen = unit.config.listen.expect("units have a listen address");
        let what = format!("app {} in {} (its listen address)", unit.app, unit.env);
        let bound = Bound::bind(&sockets, &unit.key, listen, &what).await?;
        app_listeners.push((unit.key.clone(), bound));
    }
    let config = &snapshot.config;
    let (tls, redirects) = crate::tls::load(
        config_path,
        config,
        &snapshot.units,
        &app_listeners,
        &sockets,
    )
    .await?;
    let cluster_listener = match &config.cluster {
        Some(c) => Some(
            bind(
                &sockets,
                "cluster",
                c.listen,
                "the cluster ([cluster] listen)",
            )
            .await?,
        ),
        None => None,
    };
    let cluster = match &config.cluster {
        Some(c) => {
            let cluster = crate::cluster::Cluster::open(&data_dir, c)
                .context("cannot set up the cluster CA")?;
            let tunnels = store
                .host_tunnels()
                .context("cannot read where the hosts' tunnels listen")?;
            cluster.restore_tunnels(tunnels, &config.hosts);
            Some(Arc::new(cluster))
        }
        None => None,
    };
    let (reloader, reload_queue) = Reloader::new();
    let mut daemon = Daemon {
        api: api_listener.local_addr()?,
        cluster: match &cluster_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        },
        apps: BTreeMap::new(),
        data_dir: data_dir.clone(),
        token: token.clone(),
        reload: reloader.clone(),
    };

    let notifier = Notifier::from_config(&config.notify, config_path, RetryPolicy::default())
        .context("cannot set up the webhooks in [[notify]]")?;
    let artifacts = ArtifactStore::new(data_dir.join("artifacts"));
    // Imports cut short by a crash leave temporary directories behind.
    if let Err(e) = artifacts.remove_stale_imports() {
        tracing::warn!(error = %e, "could not remove stale artifact imports");
    }
    let docker = connect_docker(&snapshot.units).await?;
    let limits = api::Limits::new(&config.api, fd_limit);
    let owner = owner_id(&data_dir)?;
    let (started_tx, started_rx) = mpsc::unbounded_channel();
    let (agent_tx, agent_rx) = mpsc::channel(AGENT_EVENTS);
    let (lifecycle_tx, lifecycle_rx) = mpsc::channel(LIFECYCLE_REQUESTS);
    let shared = Arc::new(Shared {
        artifacts,
        snapshot: ArcSwap::from_pointee(snapshot),
        pinned: Mutex::new(Default::default()),
        retired: Mutex::new(Default::default()),
        reload: reloader,
        data_dir,
        store,
        router,
        wake: Notify::new(),
        live: Mutex::new(Default::default()),
        notifier,
        migrations: Mutex::new(Default::default()),
        cluster: cluster.clone(),
        docker,
        owner,
        started: started_tx,
        agent_events: agent_tx,
        remote: Default::default(),
        lifecycle: lifecycle_tx,
        flags,
        mirrors: Default::default(),
    });
    let (exits_tx, exits_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);

    controller::pinned::pin_all(&shared);
    for (inst, live) in controller::adopt_all(&shared, &exits_tx).await? {
        tokio::spawn(controller::drain_task(shared.clone(), inst, live));
    }
    // Before accepting: the re-adopted instances take requests at once (a restart must not
    // answer a single 503).
    controller::publish_now(&shared)?;
    if let Some(transitions) = shared.router.breaker_transitions() {
        tokio::spawn(crate::breakers::record(
            Arc::downgrade(&shared),
            transitions,
        ));
    }
    tokio::spawn(crate::breakers::drive_metrics(Arc::downgrade(&shared)));

    let mut listeners = Listeners::new(shared.router.clone(), sockets.clone());
    for (key, bound) in app_listeners {
        let app = shared.app(&key).expect("a listener per unit");
        listeners.start(&key, bound, listener_config(&app, tls.get(&key).cloned()))?;
    }
    daemon.apps = listeners.addrs();
    let mut redirect_tasks = Vec::new();
    for (app, listener, https_port) in redirects {
        let stop = wait_true(stop_rx.clone());
        redirect_tasks.push(tokio::spawn(baton_proxy::serve_redirect(
            listener, app, https_port, stop,
        )));
    }
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        "API limits"
    );
    let api = tokio::spawn(api::serve(
        api_listener,
        api::router(
            shared.clone(),
            api::ApiTokens {
                admin: token,
                read: ArcSwap::from_pointee(read_token),
                data_dir: shared.data_dir.clone(),
                rotating: Default::default(),
            },
        ),
        limits,
        wait_true(stop_rx.clone()),
    ));
    let ofrep = flags_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "OFREP listening (feature flags)");
        }
        tokio::spawn(api::serve(
            listener,
            crate::flags::ofrep::router(shared.flags.clone()),
            limits,
            wait_true(stop_rx.clone()),
        ))
    });
    let cluster_task = match (cluster, cluster_listener) {
        (Some(cluster), Some(listener)) => Some(tokio::spawn(crate::cluster::serve(
            shared.clone(),
            cluster,
            listener,
            wait_true(stop_rx.clone()),
        ))),
        _ => None,
    };
    let inputs = controller::Inputs {
        started: started_rx,
        agent_events: agent_rx,
        exits: exits_rx,
        exits_tx,
    };
    let mut control = Control {
        controller: Some(ControllerTask::spawn(shared.clone(), inputs)),
        shared: shared.clone(),
        lock: Some(lock),
        sockets,
        exe,
        args,
    };

    tracing::info!(api = %daemon.api, data_dir = %daemon.data_dir.display(), "baton is up");
    if let (Some(listen), Some(cluster)) = (daemon.cluster, &shared.cluster) {
        tracing::info!(%listen, ca = %cluster.fingerprint(), "cluster listening for agents");
    }
    for (app, addr) in &daemon.apps {
        tracing::info!(app = %app, listen = %addr, "proxy listening");
    }
    // Recorded before the old process hears of it: `baton restart` returns with it in place.
    handover::announce(&shared.data_dir)?;
    incoming.ready().await;
    if let Some(ready) = ready {
        let _ = ready.send(daemon);
    }

    let mut reloads = Reloads {
        path: config_path.to_path_buf(),
        shared: shared.clone(),
        queue: reload_queue,
    };
    let ending = control
        .serve_until(shutdown, lifecycle_rx, &mut reloads, &mut listeners)
        .await;
    match ending {
        Ending::Stop {
            keep_instances: false,
        } => tracing::info!(
            "shutting down: closing listeners, finishing in-flight requests, stopping instances"
        ),
        Ending::Stop {
            keep_instances: true,
        } => tracing::info!(
            "shutting down: closing listeners, finishing in-flight requests; instances keep running for the next `baton up`"
        ),
        Ending::HandedOver => control.sockets.forget_serving(),
    }
    let _ = stop_tx.send(true);
    let controller = async {
        if let Some(c) = control.controller.take() {
            c.stop().await;
        }
    };
    let ((), ()) = tokio::join!(controller, listeners.shutdown());
    for task in redirect_tasks {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "redirect listener ended with an error");
        }
    }
    let _ = api.await;
    if let Some(task) = ofrep {
        let _ = task.await;
    }
    if let Some(task) = cluster_task
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(error = %format!("{e:#}"), "cluster listener ended with an error");
    }
    if ending
        == (Ending::Stop {
            keep_instances: false,
        })
    {
        controller::stop_all(&shared).await;
    }
    if ending != Ending::HandedOver {
        handover::unannounce(&shared.data_dir);
    }
    // Give the webhooks a moment for the last events; never hold shutdown on them.
    shared
        .notifier
        .flush(std::time::Duration::from_secs(2))
        .await;
    tracing::info!("baton stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (as nginx's `worker_rlimit_nofile`):
/// every client connection of the proxies takes a descriptor, and a backend one more.
/// Returns the limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(error) => {
            tracing::warn!(soft, hard, %error, "cannot raise the open file limit");
            soft
        }
    }
}

/// Makes the database and its WAL and shared-memory files readable by their owner only:
/// created empty with mode 0600 before SQLite opens it (SQLite gives `-wal` and `-shm` the
/// database's mode), and narrowed to 0600 where an older Baton left them wider.
fn private_db_files(db: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(db)
        .with_context(|| format!("cannot create {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let path = PathBuf::from(path);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
        }
    }
    Ok(())
}

/// Locks the data directory for this process (`DATA/lock`), or says who holds it.
pub(crate) fn lock_data_dir(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!("another `baton up` is already running with data directory {} ({errno}); stop it first or use another data_dir", data_dir.display())
    })
}

/// Listens on `addr` under `name`: on the socket a restart handed over if it has that name
/// and address, else on a new one.
async fn bind(
    sockets: &baton_proxy::handoff::Sockets,
    name: &str,
    addr: SocketAddr,
    what: &str,
) -> anyhow::Result<TcpListener> {
    sockets
        .listen(name, addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}: is another baton (or another program) using it? change the address in the config"))
}

/// Resolves once `rx` holds true (or its sender is gone).
pub(crate) async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// How many agent reports may wait for the controller loop.
const AGENT_EVENTS: usize = 1024;
/// How many restart and stop requests may wait (one is carried out at a time).
const LIFECYCLE_REQUESTS: usize = 8;

/// The local Docker Engine, connected at start when an app runs containers on this host, so
/// that a missing engine stops `baton up` with a clear error instead of failing every start.
/// Containers on other hosts are their agents' (each with its host's engine).
async fn connect_docker(units: &BTreeMap<String, Unit>) -> anyhow::Result<Option<Docker>> {
    let local = |u: &&Unit| {
        u.config.driver == Driver::Docker && u.config.host_names().iter().any(|h| h == LOCAL_HOST)
    };
    let Some(unit) = units.values().find(local) else {
        return Ok(None);
    };
    let docker = Docker::connect()
        .await
        .with_context(|| format!("app {} has driver = \"docker\"", unit.app))?;
    Ok(Some(docker))
}

/// This data directory's id (`DATA/owner`, made at first use): the owner label of its
/// containers, so two Batons on one engine (or an agent beside the controller) never adopt or
/// remove each other's.
fn owner_id(data_dir: &Path) -> anyhow::Result<String> {
    baton_runtime::docker::owner_id(data_dir)
        .with_context(|| format!("cannot read or make {}", data_dir.join("owner").display()))
}
