//! Webhook notifications of deployment events: queued, retried with backoff, never blocking.
//!
//! Each webhook has its own bounded queue and its own delivery task, so a webhook that is down
//! or hangs delays only its own later events, never the rollout and never another webhook.
//! [`Notifier::notify`] is a plain function: it serializes the event once and pushes it onto
//! every queue without awaiting. `https://` webhooks are verified against the system's CAs or
//! only those of their `ca_file` (`tls.rs`).

mod deliver;
mod queue;
mod target;
mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_core::config::{Config, ConfigError, NotifyConfig, notify_error};
use baton_core::model::Event;
use bytes::Bytes;
use tokio::task::AbortHandle;

use self::queue::{Pending, Pushed, Queue};
use self::target::Target;
use self::tls::{Tls, Trust, Trusts};

pub use self::tls::TrustError;

/// Events a webhook's queue holds before the oldest undelivered one is dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// How hard to try delivering one event to one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Longest wait for one attempt: connect, send and the response head (default 5 s).
    pub attempt_timeout: Duration,
    /// Wait after the first failed attempt; doubles after each further one (default 500 ms).
    pub first_backoff: Duration,
    /// Longest wait between two attempts (default 30 s).
    pub max_backoff: Duration,
    /// Attempts per event before it is given up with a warning (default 8).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

/// Why a [`Notifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The CAs an https webhook must be verified against could not be read.
    #[error("webhook {url}: {source}")]
    Trust {
        /// The URL without userinfo or query.
        url: String,
        /// The unreadable `ca_file` or the empty system store.
        source: TrustError,
    },
    /// A `ca_file` was given for an `http://` webhook, which never uses it.
    #[error(
        "webhook {url}: ca_file is only used by https:// webhooks: remove it, or make the webhook https://"
    )]
    CaFileWithoutHttps {
        /// The URL without userinfo or query.
        url: String,
    },
    /// The webhook URL could not be understood.
    #[error("webhook {url}: {reason}")]
    InvalidUrl {
        /// The URL without userinfo or query.
        url: String,
        /// What is wrong with it and how to write it instead.
        reason: &'static str,
    },
    /// Delivery tasks need a Tokio runtime, and the constructor was called outside one.
    #[error("webhook notifications must be set up inside the Tokio runtime")]
    NoRuntime,
}

/// Sends deployment events to webhooks. Cheap to clone: clones share the queues and tasks,
/// which stop when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// One webhook to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its `http://` or `https://` URL; userinfo is sent as `Basic` authorization.
    pub url: String,
    /// For https: the PEM file of the only CAs to trust; `None` trusts the system's.
    pub ca_file: Option<PathBuf>,
}

impl Webhook {
    /// The webhook at `url`, trusting the system's CAs if it is https.
    pub fn new(url: impl Into<String>) -> Webhook {
        Webhook {
            url: url.into(),
            ca_file: None,
        }
    }
}

/// One webhook's side of the notifier: where its events go and its queue.
struct Delivery {
    target: Target,
    queue: Arc<Queue>,
}

struct Inner {
    webhooks: Vec<Delivery>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// === impl Notifier ===

impl Notifier {
    /// Spawns one delivery task per webhook URL (`http://` or `https://`, which trusts the
    /// system's CAs). Malformed URLs are refused here, before anything is spawned. Userinfo in
    /// a URL is sent as `Basic` authorization; it and the query are never logged.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn new(webhooks: Vec<String>, policy: RetryPolicy) -> Result<Notifier, NotifyError> {
        Notifier::with_queue_capacity(webhooks, policy, DEFAULT_QUEUE_CAPACITY)
    }

    /// [`Notifier::new`] with queues of `capacity` events each (at least one) instead of
    /// [`DEFAULT_QUEUE_CAPACITY`].
    pub fn with_queue_capacity(
        webhooks: Vec<String>,
        policy: RetryPolicy,
        capacity: usize,
    ) -> Result<Notifier, NotifyError> {
        let webhooks = webhooks.into_iter().map(Webhook::new).collect();
        Notifier::start(webhooks, policy, capacity)
    }

    /// The notifier of a config's `[[notify]]` webhooks; `config_file` is where relative
    /// `ca_file` paths start from.
    pub fn from_config(
        notify: &[NotifyConfig],
        config_file: &Path,
        policy: RetryPolicy,
    ) -> Result<Notifier, NotifyError> {
        let webhooks = notify
            .iter()
            .map(|n| Webhook {
                url: n.webhook.clone(),
                ca_file: n.ca_file_path(config_file),
            })
            .collect();
        Notifier::start(webhooks, policy, DEFAULT_QUEUE_CAPACITY)
    }

    /// Parses every webhook and reads the CAs its https webhooks trust, then spawns one
    /// delivery task per webhook; nothing is spawned when any of them is refused.
    pub fn start(
        webhooks: Vec<Webhook>,
        policy: RetryPolicy,
        capacity: usize,
    ) -> Result<Notifier, NotifyError> {
        let mut trusts = Trusts::default();
        let endpoints = webhooks
            .iter()
            .map(|hook| endpoint(hook, &mut trusts))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let mut hooks = Vec::with_capacity(endpoints.len());
        let mut tasks = Vec::with_capacity(endpoints.len());
        for (target, tls) in endpoints {
            let queue = Arc::new(Queue::new(capacity));
            let run = deliver::run(target.clone(), tls, Arc::clone(&queue), policy);
            tasks.push(runtime.spawn(run).abort_handle());
            hooks.push(Delivery { target, queue });
        }
        Ok(Notifier {
            inner: Arc::new(Inner {
                webhooks: hooks,
                tasks,
            }),
        })
    }

    /// A notifier with no webhooks: [`Notifier::notify`] does nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                webhooks: Vec::new(),
                tasks: Vec::new(),
            }),
        }
    }

    /// Queues `event` for every webhook and returns at once: it never blocks and never awaits.
    ///
    /// When a webhook's queue is full its oldest undelivered event is dropped to make room,
    /// with a warning (the first drop of a run warns here; the run's count is logged when
    /// delivery catches up). The caller chooses which events to send; the notifier sends
    /// what it is given.
    pub fn notify(&self, event: &Event) {
        if self.inner.webhooks.is_empty() {
            return;
        }
        let body = match payload(event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(event = event.id, error = %e, "cannot serialize event for webhooks");
                return;
            }
        };
        for hook in &self.inner.webhooks {
            let pending = Pending {
                id: event.id,
                body: body.clone(),
            };
            if let Pushed::DroppedOldest { first: true } = hook.queue.push(pending) {
                tracing::warn!(webhook = %hook.target, event = event.id, "webhook queue is full: dropping its oldest undelivered events");
            }
        }
    }

    /// Events queued or being delivered, over all webhooks.
    pub fn pending(&self) -> usize {
        self.inner
            .webhooks
            .iter()
            .map(|hook| hook.queue.pending())
            .sum()
    }

    /// For shutdown: waits until every queue is empty (each event delivered or given up), or
    /// until `grace` has passed, whichever comes first; what is left is logged and abandoned.
    pub async fn flush(&self, grace: Duration) {
        let all = futures_all(self.inner.webhooks.iter().map(|hook| hook.queue.drained()));
        if tokio::time::timeout(grace, all).await.is_err() {
            for hook in &self.inner.webhooks {
                let left = hook.queue.pending();
                if left > 0 {
                    tracing::warn!(webhook = %hook.target, undelivered = left, "webhook events left undelivered at shutdown");
                }
            }
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let webhooks: Vec<_> = self
            .inner
            .webhooks
            .iter()
            .map(|hook| hook.target.to_string())
            .collect();
        f.debug_struct("Notifier")
            .field("webhooks", &webhooks)
            .finish()
    }
}

/// A webhook's parsed URL and, for https, the TLS it is reached with.
fn endpoint(hook: &Webhook, trusts: &mut Trusts) -> Result<(Target, Option<Tls>), NotifyError> {
    let target = Target::parse(&hook.url)?;
    let url = target.to_string();
    if !target.https {
        if hook.ca_file.is_some() {
            return Err(NotifyError::CaFileWithoutHttps { url });
        }
        return Ok((target, None));
    }
    let trust = match &hook.ca_file {
        Some(path) => Trust::CaFile(path.clone()),
        None => Trust::System,
    };
    let config = trusts.config(&trust).map_err(|source| NotifyError::Trust {
        url: url.clone(),
        source,
    })?;
    let tls = Tls::new(config, &target.host, trust).ok_or(NotifyError::InvalidUrl {
        url,
        reason: "its host is neither a DNS name nor an IP address, which https needs",
    })?;
    Ok((target, Some(tls)))
}

/// Reads every `[[notify]]` `ca_file` of `config` (parsed from `text`, read from `file`), so
/// that a missing file, one that is not PEM or one without a certificate is refused when the
/// config is loaded, at the line that names it.
pub fn check_ca_files(config: &Config, text: &str, file: &Path) -> Result<(), ConfigError> {
    for (i, n) in config.notify.iter().enumerate() {
        if let Some(path) = n.ca_file_path(file) {
            tls::read_ca_file(&path)
                .map_err(|e| notify_error(text, file, i, "ca_file", format!("ca_file {e}")))?;
        }
    }
    Ok(())
}

/// Waits for each future in turn: each resolves once its queue is drained, and a drained
/// queue stays drained unless new events come, so the order does not matter.
async fn futures_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    for future in futures {
        future.await;
    }
}

/// Whether an event of `kind` is about a deployment's course (started, step, paused, verdict
/// failed, promoted, aborting, rolled back, succeeded, ...) rather than a single instance: the
/// events the issue asks webhooks to receive. A config reload is one too: it changes what
/// the next deployments do. So is a circuit breaker's transition (users got its fallback) and
/// a live flag change (users got other code paths).
pub fn is_deployment_event(kind: &str) -> bool {
    kind.starts_with("deployment_")
        || kind.starts_with("verdict_")
        || kind.starts_with("breaker_")
        || kind == "config_reloaded"
        || kind == "flag_changed"
        || kind == "flag_token"
}

/// The JSON body POSTed for `event`: its fields named as in the API, plus `"source": "baton"`.
/// Spelled out rather than flattened, so a field added to [`Event`] does not change what
/// webhooks receive.
fn payload(event: &Event) -> serde_json::Result<Bytes> {
    #[derive(serde::Serialize)]
    struct Payload<'a> {
        id: i64,
        at: i64,
        app: &'a str,
        env: &'a str,
        deployment: Option<i64>,
        kind: &'a str,
        message: &'a str,
        source: &'static str,
    }
    // Events are kept per unit (`app@env`); webhooks get the two apart.
    let (app, env) = baton_core::config::split_key(&event.app);
    let body = Payload {
        id: event.id,
        at: event.at,
        app,
        env,
        deployment: event.deployment,
        kind: &event.kind,
        message: &event.message,
        source: "baton",
    };
    serde_json::to_vec(&body).map(Bytes::from)
}
