//! Scraping the apps' own `/metrics` from each instance, and the counter rates and gauge
//! values the analysis judges from two scrapes of one release.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use baton_core::prom::{self, PromError, Sample};

/// The largest `/metrics` body read; a larger one is an error, not a truncated scrape.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why one instance could not be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Nothing accepted the connection.
    #[error("GET http://{addr}{path}: cannot connect: {source}")]
    Connect {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The connection broke or the answer was not HTTP.
    #[error("GET http://{addr}{path}: {source}")]
    Http {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// What hyper saw.
        source: hyper::Error,
    },
    /// The path is not a valid request target.
    #[error("GET http://{addr}{path}: not a valid path; metrics paths look like /metrics")]
    InvalidPath {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
    },
    /// The instance answered, but not with 2xx.
    #[error("GET http://{addr}{path}: answered {status}")]
    Status {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The body was larger than [`MAX_BODY`].
    #[error("GET http://{addr}{path}: body larger than {MAX_BODY} bytes")]
    TooLarge {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
    },
    /// The body is not UTF-8 text.
    #[error("GET http://{addr}{path}: body is not UTF-8 text")]
    NotText {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
    },
    /// The whole exchange took longer than the timeout.
    #[error("GET http://{addr}{path}: no complete answer within {timeout:?}")]
    Timeout {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The body is not the Prometheus text format.
    #[error("http://{addr}{path}: {source}")]
    Parse {
        /// The instance's address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// What the parser found.
        source: PromError,
    },
}

/// `GET http://addr/path` on a connection of its own and returns the body text. Connecting,
/// the answer and its whole body must fit in `timeout`; a non-2xx answer, a body over
/// [`MAX_BODY`] or one that is not UTF-8 is an error.
pub async fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ScrapeError> {
    fetch_via(addr, None, path, timeout).await
}

/// [`fetch`] on a connection `dial` opens, when given (an instance on another host: through
/// its tunnel); `addr` then only names it.
pub async fn fetch_via(
    addr: SocketAddr,
    dial: Option<&dyn baton_proxy::Dial>,
    path: &str,
    timeout: Duration,
) -> Result<String, ScrapeError> {
    match tokio::time::timeout(timeout, get(addr, dial, path)).await {
        Ok(result) => result,
        Err(_) => Err(ScrapeError::Timeout {
            addr,
            path: path.to_owned(),
            timeout,
        }),
    }
}

async fn get(
    addr: SocketAddr,
    dial: Option<&dyn baton_proxy::Dial>,
    path: &str,
) -> Result<String, ScrapeError> {
    let http = |source| ScrapeError::Http {
        addr,
        path: path.to_owned(),
        source,
    };
    if !path.starts_with('/') {
        return Err(ScrapeError::InvalidPath {
            addr,
            path: path.to_owned(),
        });
    }
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, HeaderValue::from_static("baton"))
        .header(header::ACCEPT, HeaderValue::from_static("text/plain"))
        .header(header::CONNECTION, HeaderValue::from_static("close"))
        .body(Empty::<Bytes>::new())
        .map_err(|_| ScrapeError::InvalidPath {
            addr,
            path: path.to_owned(),
        })?;
    let stream = match dial {
        Some(dial) => dial.dial().await,
        None => TcpStream::connect(addr).await,
    };
    let stream = stream.map_err(|source| ScrapeError::Connect {
        addr,
        path: path.to_owned(),
        source,
    })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // The connection is driven alongside the exchange, not spawned: when the timeout drops
    // this future, nothing is left behind holding the socket.
    let exchange = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status {
                addr,
                path: path.to_owned(),
                status,
            });
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => http(*e),
                Err(_) => ScrapeError::TooLarge {
                    addr,
                    path: path.to_owned(),
                },
            })?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|_| ScrapeError::NotText {
            addr,
            path: path.to_owned(),
        })
    };
    tokio::pin!(conn, exchange);
    tokio::select! {
        result = &mut exchange => result,
        // With `connection: close` the connection may finish as soon as the body is handed
        // over; the exchange then completes (or fails) from what it was given.
        _ = &mut conn => exchange.await,
    }
}

/// One scrape of a release's instances: each instance's samples, and when it was taken.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// When the scrape started.
    pub at: Instant,
    /// The samples of each instance that answered, by instance id.
    pub per_instance: BTreeMap<String, Vec<Sample>>,
}

/// The rate per second of counter `name` between two scrapes, summed over the instances
/// present in both. An instance's increase is `later - earlier`, or `later` when the counter
/// went down (the instance restarted and its counter began again at zero); a counter missing
/// from the earlier scrape counts from zero, one missing from the later scrape adds nothing.
/// `None` when no instance in both scrapes has the counter, or no time passed between them.
pub fn counter_rate(earlier: &Scrape, later: &Scrape, name: &str) -> Option<f64> {
    let seconds = later.at.checked_duration_since(earlier.at)?.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let mut increase = None;
    for (instance, samples) in &later.per_instance {
        let Some(before) = earlier.per_instance.get(instance) else {
            continue;
        };
        let (before, after) = (prom::sum(before, name), prom::sum(samples, name));
        let delta = match (before, after) {
            (None, None) => continue,
            (Some(_), None) => 0.0,
            (None, Some(after)) => after,
            (Some(before), Some(after)) if after < before => after,
            (Some(before), Some(after)) => after - before,
        };
        *increase.get_or_insert(0.0) += delta.max(0.0);
    }
    increase.map(|increase: f64| increase / seconds)
}

/// The value of gauge `name` summed over the scrape's instances; `None` when none has it.
pub fn gauge(later: &Scrape, name: &str) -> Option<f64> {
    later
        .per_instance
        .values()
        .filter_map(|samples| prom::sum(samples, name))
        .reduce(|a, b| a + b)
}

/// One instance to scrape.
pub struct ScrapeTarget {
    /// The instance id.
    pub id: String,
    /// Where it listens, as its host's address and port.
    pub addr: SocketAddr,
    /// How to reach it when not by a TCP connect to `addr` (another host's tunnel).
    pub dial: Option<std::sync::Arc<dyn baton_proxy::Dial>>,
}

/// Scrapes `path` on every instance at once. An instance that cannot be reached, answers an
/// error or serves something that does not parse is left out (logged at debug): the analysis
/// judges from the instances that answered.
pub async fn scrape_all(instances: &[ScrapeTarget], path: &str, timeout: Duration) -> Scrape {
    // Tokio's clock, so tests with paused time see the same instants as their timers.
    let at = tokio::time::Instant::now().into_std();
    let mut tasks = tokio::task::JoinSet::new();
    for target in instances {
        let (id, addr, path) = (target.id.clone(), target.addr, path.to_owned());
        let dial = target.dial.clone();
        tasks.spawn(async move {
            let fetched = fetch_via(addr, dial.as_deref(), &path, timeout).await;
            let samples = fetched.and_then(|text| {
                prom::parse(&text).map_err(|source| ScrapeError::Parse { addr, path, source })
            });
            (id, samples)
        });
    }
    let mut per_instance = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((id, Ok(samples))) => {
                per_instance.insert(id, samples);
            }
            Ok((id, Err(e))) => {
                tracing::debug!(instance = %id, error = %e, "metrics scrape failed")
            }
            Err(e) => tracing::debug!(error = %e, "metrics scrape task failed"),
        }
    }
    Scrape { at, per_instance }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http_body_util::Full;
    use hyper::Response;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// A `/metrics` server whose status and text the test sets.
    struct App {
        addr: SocketAddr,
        answer: Arc<Mutex<(u16, String)>>,
    }

    impl App {
        async fn start(text: &str) -> App {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let answer = Arc::new(Mutex::new((200, text.to_owned())));
            let shared = Arc::clone(&answer);
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let shared = Arc::clone(&shared);
                    let svc = service_fn(move |_req| {
                        let (status, text) = shared.lock().unwrap().clone();
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc),
                    );
                }
            });
            App { addr, answer }
        }

        fn set(&self, status: u16, text: &str) {
            *self.answer.lock().unwrap() = (status, text.to_owned());
        }
    }

    async fn dead_addr() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    const T: Duration = Duration::from_secs(10);

    fn scrape(at: Instant, instances: &[(&str, &str)]) -> Scrape {
        let per_instance = instances
            .iter()
            .map(|(id, text)| (id.to_string(), prom::parse(text).unwrap()))
            .collect();
        Scrape { at, per_instance }
    }

    #[tokio::test]
    async fn fetch_returns_the_body_of_a_2xx_answer() {
        let app = App::start("demo_signups_total 3\n").await;
        assert_eq!(
            fetch(app.addr, "/metrics", T).await.unwrap(),
            "demo_signups_total 3\n"
        );
    }

    #[tokio::test]
    async fn fetch_refuses_non_2xx_too_large_down_and_hanging() {
        let app = App::start("").await;
        app.set(503, "busy");
        let err = fetch(app.addr, "/metrics", T).await.unwrap_err();
        assert!(
            matches!(err, ScrapeError::Status { status, .. } if status == 503),
            "{err}"
        );

        app.set(200, &"x".repeat(MAX_BODY + 1));
        let err = fetch(app.addr, "/metrics", T).await.unwrap_err();
        assert!(matches!(err, ScrapeError::TooLarge { .. }), "{err}");
        app.set(200, &"x".repeat(MAX_BODY));
        assert_eq!(
            fetch(app.addr, "/metrics", T).await.unwrap().len(),
            MAX_BODY
        );

        for path in ["metrics", "/a b"] {
            let err = fetch(app.addr, path, T).await.unwrap_err();
            assert!(
                matches!(err, ScrapeError::InvalidPath { .. }),
                "{path}: {err}"
            );
        }

        let err = fetch(dead_addr().await, "/metrics", T).await.unwrap_err();
        assert!(matches!(err, ScrapeError::Connect { .. }), "{err}");

        // Accepts and never answers.
        let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = fetch(
            hanging.local_addr().unwrap(),
            "/metrics",
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ScrapeError::Timeout { .. }), "{err}");
    }

    #[test]
    fn counter_rate_sums_increases_over_instances_present_in_both() {
        let t0 = Instant::now();
        let earlier = scrape(
            t0,
            &[
                ("web-1", "demo_signups_total 10\n"),
                (
                    "web-2",
                    "demo_signups_total{plan=\"a\"} 5\ndemo_signups_total{plan=\"b\"} 5\n",
                ),
                ("web-3", "demo_signups_total 100\n"),
            ],
        );
        let later = scrape(
            t0 + Duration::from_secs(10),
            &[
                ("web-1", "demo_signups_total 30\n"),
                (
                    "web-2",
                    "demo_signups_total{plan=\"a\"} 15\ndemo_signups_total{plan=\"b\"} 25\n",
                ),
                ("web-4", "demo_signups_total 1000\n"),
            ],
        );
        // web-1 +20, web-2 +30; web-3 and web-4 are in one scrape only.
        assert_eq!(
            counter_rate(&earlier, &later, "demo_signups_total"),
            Some(5.0)
        );
    }

    #[test]
    fn counter_reset_counts_the_later_value_as_the_increase() {
        let t0 = Instant::now();
        let earlier = scrape(t0, &[("web-1", "c_total 50\n"), ("web-2", "c_total 10\n")]);
        let later = scrape(
            t0 + Duration::from_secs(4),
            &[("web-1", "c_total 8\n"), ("web-2", "c_total 10\n")],
        );
        assert_eq!(counter_rate(&earlier, &later, "c_total"), Some(2.0));
    }

    #[test]
    fn counter_appearing_or_vanishing_between_scrapes() {
        let t0 = Instant::now();
        let earlier = scrape(t0, &[("web-1", "other 1\n"), ("web-2", "c_total 9\n")]);
        let later = scrape(
            t0 + Duration::from_secs(2),
            &[("web-1", "c_total 6\n"), ("web-2", "other 1\n")],
        );
        assert_eq!(counter_rate(&earlier, &later, "c_total"), Some(3.0));
    }

    #[test]
    fn missing_metric_or_no_elapsed_time_is_none() {
        let t0 = Instant::now();
        let earlier = scrape(t0, &[("web-1", "c_total 1\n")]);
        let later = scrape(t0 + Duration::from_secs(1), &[("web-1", "c_total 2\n")]);
        assert_eq!(counter_rate(&earlier, &later, "absent_total"), None);
        assert_eq!(
            counter_rate(&later, &earlier, "c_total"),
            None,
            "reversed scrapes"
        );
        assert_eq!(
            counter_rate(&earlier, &earlier, "c_total"),
            None,
            "no time passed"
        );
        assert_eq!(gauge(&later, "absent"), None);
        assert_eq!(
            counter_rate(
                &earlier,
                &scrape(t0 + Duration::from_secs(1), &[]),
                "c_total"
            ),
            None
        );
    }

    #[test]
    fn gauge_sums_over_instances() {
        let s = scrape(
            Instant::now(),
            &[
                ("web-1", "queue_depth 3\n"),
                (
                    "web-2",
                    "queue_depth{q=\"a\"} 1.5\nqueue_depth{q=\"b\"} 0.5\n",
                ),
                ("web-3", "other 9\n"),
            ],
        );
        assert_eq!(gauge(&s, "queue_depth"), Some(5.0));
    }

    #[tokio::test]
    async fn scrape_all_leaves_out_failed_instances_and_feeds_rates() {
        let a =
            App::start("# TYPE demo_signups_total counter\ndemo_signups_total 10\nin_flight 2\n")
                .await;
        let b = App::start("demo_signups_total 20\nin_flight 3\n").await;
        let broken = App::start("").await;
        broken.set(500, "");
        let garbled = App::start("not a metric line {\n").await;
        let instances = [
            ("web-1", a.addr),
            ("web-2", b.addr),
            ("web-3", dead_addr().await),
            ("web-4", broken.addr),
            ("web-5", garbled.addr),
        ]
        .map(|(id, addr)| ScrapeTarget {
            id: id.to_owned(),
            addr,
            dial: None,
        });
        let first = scrape_all(&instances, "/metrics", T).await;
        assert_eq!(
            first.per_instance.keys().collect::<Vec<_>>(),
            ["web-1", "web-2"]
        );
        assert_eq!(gauge(&first, "in_flight"), Some(5.0));

        a.set(200, "demo_signups_total 40\n");
        b.set(200, "demo_signups_total 5\n");
        let mut second = scrape_all(&instances, "/metrics", T).await;
        // The rate divides by the time between the scrapes; fix it so the figure is exact.
        second.at = first.at + Duration::from_secs(7);
        // web-1 +30, web-2 reset to 5.
        assert_eq!(
            counter_rate(&first, &second, "demo_signups_total"),
            Some(5.0)
        );
    }
}
