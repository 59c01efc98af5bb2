//! A joined host's session on a mutually authenticated connection: `hello` (its address must
//! still be the configured one), a new generation, `welcome`, then heartbeats both ways and
//! the controller's queued messages, until the agent goes away, misses its heartbeats, is
//! replaced by a newer session of the same host, or Baton stops.

use std::sync::Arc;

use baton_cluster::{
    AgentMsg, ControllerMsg, Hello, PROTOCOL_VERSION, Welcome, write_frame_within,
};
use baton_core::model::EventKind;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Cluster;
use super::listener::{Conn, Reader, Writer, close, record, refused};
use super::registry::{Closed, QUEUE, Registered};
use crate::clock;
use crate::shared::{AgentEvent, Shared};

/// How a session ended.
enum End {
    /// The host is gone: recorded as `host_lost` with the reason.
    Lost(String),
    /// A newer session of the same host took over.
    Replaced,
    /// Baton is stopping.
    Stopping,
}

/// Runs host `name`'s session; `first` is the connection's first message.
pub(super) async fn run(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    name: String,
    first: AgentMsg,
    conn: Conn,
) {
    let Conn {
        peer,
        mut reader,
        mut wr,
        stop,
    } = conn;
    let hello = match first {
        AgentMsg::Hello(h) => h,
        _ => {
            let reason = "a host's session starts with hello";
            close(&mut wr, &refused(reason)).await;
            return;
        }
    };
    let checked = check_hello(&shared, &name, &hello)
        .and_then(|()| issue_tunnel_cert(&cluster, &name, &hello));
    let tunnel_cert = match checked {
        Ok(pem) => pem,
        Err(reason) => {
            record(
                &shared,
                EventKind::HostRefused,
                &format!("host {name} from {peer} refused: {reason}"),
            );
            close(&mut wr, &refused(reason)).await;
            return;
        }
    };
    let now = clock::now();
    let generation = match shared.store.host_session(&name, &hello.version, now) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(host = %name, error = %e, "cannot open a host session");
            close(
                &mut wr,
                &refused("the controller cannot write its store; try again later"),
            )
            .await;
            return;
        }
    };
    let Some(registered) =
        cluster
            .registry
            .register(&name, generation, hello.version.clone(), peer, now)
    else {
        close(&mut wr, &refused("a newer session of this host is open")).await;
        return;
    };
    if let Some(offer) = &hello.tunnel {
        let addr = std::net::SocketAddr::new(hello.address, offer.port);
        cluster.set_tunnel_addr(&name, addr);
        // A new session may be a restarted agent, whose old process keeps splicing its tunnel
        // connections until the edge closes them: from now on the edge reuses none of them,
        // and the idle ones are closed at once (a session that only reconnected costs its
        // pooled connections, nothing more).
        cluster
            .tunnel_epoch(&name)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared.router.close_stale_connections();
        // Kept in the store too: a restarted controller reaches the host's instances before
        // this session is back (Cluster::restore_tunnels).
        if let Err(e) = shared.store.set_host_tunnel(&name, &addr.to_string()) {
            tracing::error!(host = %name, error = %e, "cannot record where a host's tunnel listens");
        }
    }
    // The controller learns of the new session at once, with what runs on the host.
    let hello_event = AgentEvent::Hello {
        host: name.clone(),
        running: hello.running.clone(),
    };
    let _ = shared.agent_events.send(hello_event).await;
    shared.wake.notify_one();
    record(
        &shared,
        EventKind::HostConnected,
        &format!(
            "host {name} connected from {peer}, generation {generation}, agent {:?}",
            hello.version
        ),
    );
    let welcome = ControllerMsg::Welcome(Welcome {
        generation: generation as u64,
        heartbeat_timeout_ms: cluster.heartbeat_timeout().as_millis() as u64,
        tunnel_cert: Some(tunnel_cert),
    });
    let end = match write_frame_within(&mut wr, &welcome, cluster.heartbeat_timeout()).await {
        Ok(()) => {
            let session = Session {
                shared: &shared,
                cluster: &cluster,
                name: &name,
                generation,
            };
            session.serve(registered, &mut reader, &mut wr, stop).await
        }
        Err(e) => End::Lost(format!("cannot send welcome: {e}")),
    };
    cluster.registry.unregister(&name, generation);
    shared.wake.notify_one();
    if let Err(e) = shared.store.host_seen(&name, clock::now()) {
        tracing::error!(host = %name, error = %e, "cannot record when a host was last seen");
    }
    match end {
        End::Lost(reason) => record(
            &shared,
            EventKind::HostLost,
            &format!("host {name} lost (generation {generation}): {reason}"),
        ),
        End::Replaced => {
            tracing::info!(host = %name, generation, "host session replaced by a newer one")
        }
        End::Stopping => {}
    }
}

fn check_hello(shared: &Shared, name: &str, hello: &Hello) -> Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the agent speaks protocol {} and this controller {PROTOCOL_VERSION}: run the same Baton version on both",
            hello.protocol
        ));
    }
    let snapshot = shared.config();
    let Some(host) = snapshot.config.hosts.get(name) else {
        return Err(format!(
            "host {name} is no longer in the controller's baton.toml: add [hosts.{name}] back, or stop its agent"
        ));
    };
    if host.address != hello.address {
        return Err(format!(
            "host {name} has address {} in the controller's baton.toml but the agent says {}: fix [hosts.{name}] address, or the agent's --address",
            host.address, hello.address
        ));
    }
    Ok(())
}

/// The certificate of the host's tunnel listener, over the key its `hello` offers.
fn issue_tunnel_cert(cluster: &Cluster, name: &str, hello: &Hello) -> Result<String, String> {
    let Some(offer) = &hello.tunnel else {
        return Err(format!(
            "host {name}'s agent offers no tunnel, so the controller could not reach its instances: run the same Baton version on both"
        ));
    };
    if offer.port == 0 {
        return Err(format!("host {name}'s agent offers a tunnel on port 0"));
    }
    let key = baton_cluster::from_hex_key(&offer.public_key)
        .ok_or_else(|| format!("host {name}'s tunnel key is not hex"))?;
    cluster
        .ca()
        .tunnel_cert(name, &key)
        .map_err(|e| format!("cannot issue host {name}'s tunnel certificate: {e}"))
}

/// One session, once open.
struct Session<'a> {
    shared: &'a Shared,
    cluster: &'a Cluster,
    name: &'a str,
    generation: i64,
}

impl Session<'_> {
    /// Heartbeats and queued messages until the session ends.
    async fn serve(
        &self,
        registered: Registered,
        reader: &mut Reader,
        wr: &mut Writer,
        mut stop: watch::Receiver<bool>,
    ) -> End {
        // A host that takes nothing for a heartbeat timeout is as gone as one that sends
        // nothing: a write never waits longer, so a stalled agent cannot hold the session.
        let timeout = self.cluster.heartbeat_timeout();
        let Registered { mut rx, mut closed } = registered;
        let mut deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                msg = reader.next::<AgentMsg>() => match msg {
                    Ok(Some(AgentMsg::Heartbeat)) => {
                        deadline = Instant::now() + timeout;
                        self.cluster.registry.seen(self.name, self.generation, clock::now());
                        if let Err(e) = write_frame_within(wr, &ControllerMsg::Heartbeat, timeout).await {
                            return End::Lost(format!("cannot write to the agent: {e}"));
                        }
                    }
                    Ok(Some(AgentMsg::Served { apps })) => {
                        deadline = Instant::now() + timeout;
                        self.cluster.served(self.name, apps, clock::now());
                    }
                    Ok(Some(AgentMsg::Breaker(b))) => {
                        deadline = Instant::now() + timeout;
                        crate::breakers::record_host(self.shared, self.name, &b);
                    }
                    Ok(Some(
                        msg @ (AgentMsg::Started(_)
                        | AgentMsg::StartFailed { .. }
                        | AgentMsg::Exited { .. }
                        | AgentMsg::Stopped { .. }),
                    )) => {
                        deadline = Instant::now() + timeout;
                        let host = self.name.to_string();
                        let _ = self.shared.agent_events.send(AgentEvent::Msg { host, msg }).await;
                    }
                    Ok(Some(other)) => {
                        return End::Lost(format!(
                            "protocol error: unexpected {} in a session",
                            kind(&other)
                        ));
                    }
                    Ok(None) => {
                        return End::Lost(
                            "the connection closed (the agent stopped, or the network broke)".into(),
                        );
                    }
                    Err(e) => return End::Lost(e.to_string()),
                },
                queued = rx.recv() => match queued {
                    Some(msg) => {
                        if let Err(e) = write_frame_within(wr, &msg, timeout).await {
                            return End::Lost(format!("cannot write to the agent: {e}"));
                        }
                    }
                    None => return End::Replaced,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return End::Lost(format!("no heartbeat for {}ms", timeout.as_millis()));
                }
                why = &mut closed => return match why {
                    Ok(Closed::Slow) => End::Lost(format!(
                        "too slow to take the controller's messages ({QUEUE} waiting)"
                    )),
                    _ => End::Replaced,
                },
                _ = stopped(&mut stop) => return End::Stopping,
            }
        }
    }
}

/// Resolves when Baton stops (the guard `wait_for` returns is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn kind(msg: &AgentMsg) -> &'static str {
    match msg {
        AgentMsg::Join(_) => "join",
        AgentMsg::Hello(_) => "hello",
        AgentMsg::Heartbeat => "heartbeat",
        AgentMsg::Started(_) => "started",
        AgentMsg::StartFailed { .. } => "start_failed",
        AgentMsg::Exited { .. } => "exited",
        AgentMsg::Stopped { .. } => "stopped",
        AgentMsg::Fetch { .. } => "fetch",
        AgentMsg::Served { .. } => "served",
        AgentMsg::Breaker(_) => "breaker",
    }
}
