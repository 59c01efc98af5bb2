//! The session with the controller: connect with the host's certificate, `hello`, then a
//! heartbeat every second, until the connection fails or the controller falls silent; then
//! again, with backoff, forever. The controller's messages arrive in [`Session::handle`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_cluster::{
    AgentMsg, ControllerMsg, FrameReader, HEARTBEAT_INTERVAL_MS, Hello, PROTOCOL_VERSION, VERSION,
    write_frame_within,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::connect::{CONNECT_TIMEOUT, connect};
use crate::executor::{Executor, forward_breakers, forward_exits};
use crate::handover::Handover;
use crate::identity::Identity;
use crate::tunnel::Tunnel;
use crate::{AgentError, AgentOptions};

/// Keeps a session with the controller until `shutdown` resolves, or SIGUSR2 handed over to
/// a new agent.
pub(crate) async fn run_forever(
    opts: &AgentOptions,
    id: Identity,
    shutdown: impl Future<Output = ()>,
    handover: &mut Handover,
) -> Result<(), AgentError> {
    let config = match baton_cluster::agent_config(&id.ca, id.chain, id.key) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot use the stored credentials");
            return Ok(());
        }
    };
    tokio::pin!(shutdown);
    let (executor, exits) = Executor::start(
        &opts.data_dir,
        &opts.controller,
        opts.address,
        handover.sockets.clone(),
    )
    .await;
    let tunnel = Tunnel::start(
        &opts.data_dir,
        opts.address,
        opts.tunnel_port,
        &id.ca,
        &handover.sockets,
        executor.clone(),
    )
    .await?;
    executor.restore_split().await;
    handover.ready(&opts.data_dir).await;
    let mut usr2 = baton_proxy::handoff::RestartSignal::new();
    let outbox: Outbox = Arc::default();
    tokio::spawn(forward_exits(exits, outbox.clone()));
    if let Some(transitions) = executor.breaker_transitions() {
        tokio::spawn(forward_breakers(transitions, outbox.clone()));
    }
    let mut backoff = Backoff::default();
    loop {
        let mut session = Session {
            opts,
            welcomed: false,
            executor: &executor,
            outbox: &outbox,
            tunnel: &tunnel,
        };
        let restart = tokio::select! {
            ended = session.run(config.clone()) => {
                tracing::warn!(controller = %opts.controller, reason = %ended, "session with the controller ended");
                false
            }
            _ = &mut shutdown => return Ok(()),
            () = usr2.recv() => true,
        };
        // The session is closed (its future dropped): the control channel is the new agent's.
        if restart && restarted(opts, handover, &executor, &tunnel).await {
            return Ok(());
        }
        if session.welcomed {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(()),
            () = usr2.recv() => {
                if restarted(opts, handover, &executor, &tunnel).await {
                    return Ok(());
                }
            }
        }
    }
}

/// SIGUSR2: hands over to the agent binary on disk; true once the new agent serves and this
/// one's listeners have finished their requests.
async fn restarted(
    opts: &AgentOptions,
    handover: &Handover,
    executor: &Executor,
    tunnel: &Tunnel,
) -> bool {
    tracing::info!("SIGUSR2: restarting the agent");
    match handover.hand_over(&opts.data_dir).await {
        Ok(pid) => {
            tracing::info!(
                pid,
                "the new agent serves; finishing in-flight requests and exiting"
            );
            tokio::join!(executor.close_listeners(), tunnel.drain());
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "agent restart failed; this agent keeps serving");
            false
        }
    }
}

/// The current session's queue of messages to the controller, if a session is open.
type Outbox = Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<AgentMsg>>>>;

struct Session<'a> {
    opts: &'a AgentOptions,
    welcomed: bool,
    executor: &'a Arc<Executor>,
    outbox: &'a Outbox,
    tunnel: &'a Tunnel,
}

impl Session<'_> {
    /// One session; returns why it ended.
    async fn run(&mut self, config: Arc<rustls::ClientConfig>) -> String {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        *self.outbox.lock().unwrap_or_else(|e| e.into_inner()) = Some(out_tx.clone());
        let ended = self.serve(config, out_tx, &mut out_rx).await;
        *self.outbox.lock().unwrap_or_else(|e| e.into_inner()) = None;
        ended
    }

    async fn serve(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        out_tx: mpsc::UnboundedSender<AgentMsg>,
        out_rx: &mut mpsc::UnboundedReceiver<AgentMsg>,
    ) -> String {
        let tls = match connect(&self.opts.controller, self.opts.address, config.clone()).await {
            Ok(tls) => tls,
            Err(e) => return e.to_string(),
        };
        let (rd, mut wr) = tokio::io::split(tls);
        let mut reader = FrameReader::new(rd);
        let hello = AgentMsg::Hello(Hello {
            version: VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
            address: self.opts.address,
            running: self.executor.running(),
            tunnel: Some(self.tunnel.offer()),
        });
        if let Err(e) = write_frame_within(&mut wr, &hello, CONNECT_TIMEOUT).await {
            return e.to_string();
        }
        let timeout = match tokio::time::timeout(CONNECT_TIMEOUT, reader.next::<ControllerMsg>())
            .await
        {
            Ok(Ok(Some(ControllerMsg::Welcome(w)))) => {
                tracing::info!(host = %self.opts.name, generation = w.generation, "connected to the controller");
                self.welcomed = true;
                match &w.tunnel_cert {
                    Some(pem) => self.tunnel.install(pem),
                    None => tracing::error!(
                        "the controller issued no tunnel certificate: the controller's proxy cannot reach this host's instances"
                    ),
                }
                Duration::from_millis(w.heartbeat_timeout_ms)
            }
            Ok(Ok(Some(ControllerMsg::Refused(r)))) => return format!("refused: {}", r.reason),
            Ok(Ok(Some(other))) => return format!("protocol error: {other:?} before welcome"),
            Ok(Ok(None)) => return "the controller closed the connection".into(),
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "no welcome from the controller in time".into(),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(HEARTBEAT_INTERVAL_MS));
        let mut silent_until = Instant::now() + timeout;
        let mut served = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A controller that takes nothing for its heartbeat timeout is as gone as
                    // a silent one: no write waits longer.
                    if let Err(e) = write_frame_within(&mut wr, &AgentMsg::Heartbeat, timeout).await {
                        return e.to_string();
                    }
                    // The hosts' traffic, for the external-LB handshake: only when it changed.
                    let now = self.executor.served();
                    if !now.is_empty() && served.as_ref() != Some(&now) {
                        let msg = AgentMsg::Served { apps: now.clone() };
                        if let Err(e) = write_frame_within(&mut wr, &msg, timeout).await {
                            return e.to_string();
                        }
                        served = Some(now);
                    }
                }
                msg = reader.next::<ControllerMsg>() => match msg {
                    Ok(Some(msg)) => {
                        silent_until = Instant::now() + timeout;
                        match msg {
                            ControllerMsg::Heartbeat => {}
                            // In order: a split applies before a later stop drains.
                            ControllerMsg::Split(split) => self.executor.apply_split(&split).await,
                            msg => self.executor.handle(msg, config.clone(), out_tx.clone()),
                        }
                    }
                    Ok(None) => return "the controller closed the connection".into(),
                    Err(e) => return e.to_string(),
                },
                Some(msg) = out_rx.recv() => {
                    if let Err(e) = write_frame_within(&mut wr, &msg, timeout).await {
                        return e.to_string();
                    }
                }
                _ = tokio::time::sleep_until(silent_until) => {
                    return format!("no word from the controller for {}ms", timeout.as_millis());
                }
            }
        }
    }
}
