//! The analysis loop: every `analysis.interval`, judge the canary of each app's active canary
//! deployment against its stable release over the current step's window, and store the
//! verdict with its figures. The planner reads the latest verdict of the current step.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use baton_core::analysis::{
    self, Bucket, Criteria, MetricKind, MetricReading, MetricRule, Outcome, Verdict, Window,
};
use baton_core::config::{AppConfig, MetricKindConfig};
use baton_core::model::{Deployment, Millis, Phase, Strategy};
use baton_core::plan::Judgement;
use baton_proxy::MetricsSnapshot;

use crate::scrape::{self, Scrape, ScrapeTarget};
use crate::shared::Shared;

/// Where the current step's window started, per app (in memory: after a restart of Baton the
/// window simply starts again, which only delays a verdict).
#[derive(Default)]
pub struct Windows(HashMap<String, StepWindow>);

struct StepWindow {
    key: (i64, u32, u32),
    baseline: BTreeMap<String, MetricsSnapshot>,
    /// Taken when the warm-up ends: latency is judged from here on.
    warm: Option<BTreeMap<String, MetricsSnapshot>>,
    started: Millis,
    next_at: Millis,
    last_scrape: Option<Scrape>,
}

/// The verdict the planner should read for `d`: the latest stored one of its current step.
pub fn judgement(shared: &Shared, d: &Deployment) -> anyhow::Result<Option<Judgement>> {
    if !matches!(d.strategy, Strategy::Canary | Strategy::Dark) {
        return Ok(None);
    }
    let last = shared.store.verdicts(d.id, 1)?.pop();
    Ok(last
        .filter(|v| v.step == d.step)
        .map(|v| match v.outcome.as_str() {
            "pass" => Judgement::Pass,
            "fail" => Judgement::Fail(v.summary.trim_start_matches("fail: ").to_string()),
            _ => {
                Judgement::Inconclusive(v.summary.trim_start_matches("inconclusive: ").to_string())
            }
        }))
}

/// Judges the canary of `d` if its interval has come.
pub async fn run(
    shared: &Shared,
    windows: &mut Windows,
    app: &str,
    config: &AppConfig,
    d: Option<&Deployment>,
    now: Millis,
) -> anyhow::Result<()> {
    if let Some(d) = d.filter(|d| super::dark::in_dark_step(d)) {
        return super::dark::judge(shared, config, d, now);
    }
    let judged = d.filter(|d| {
        matches!(d.strategy, Strategy::Canary | Strategy::Dark)
            && matches!(d.phase, Phase::Progressing | Phase::Paused)
            && d.weight > 0
            && d.weight < 100
    });
    let Some(d) = judged else {
        windows.0.remove(app);
        return Ok(());
    };
    let stable = d.from.clone().unwrap_or_default();
    let key = (d.id, d.step, d.weight);
    let warmup = config.analysis.warmup.as_millis_i64();
    // The controller ticks every 100 ms; the counters are summed only when a window starts,
    // warms up or is judged.
    let idle = windows.0.get(app).is_some_and(|w| {
        w.key == key && now < w.next_at && (w.warm.is_some() || now < w.started + warmup)
    });
    if idle {
        return Ok(());
    }
    let per_release = release_metrics(shared, app);
    // A new step (or the first sight of one, also after a restart of Baton) starts its window
    // now, for both releases, so they see the same traffic: never their lifetime counters.
    if windows.0.get(app).is_none_or(|w| w.key != key) {
        let fresh = StepWindow {
            key,
            baseline: per_release.clone(),
            warm: None,
            started: now,
            next_at: now,
            last_scrape: None,
        };
        windows.0.insert(app.to_string(), fresh);
    }
    let w = windows.0.get_mut(app).expect("inserted above");
    if w.warm.is_none() && now >= w.started + warmup {
        w.warm = Some(per_release.clone());
    }
    let interval = config.analysis.interval.as_millis_i64();
    if now < w.next_at {
        return Ok(());
    }
    w.next_at = now + interval;
    let window_of = |release: &str| {
        let now_m = per_release.get(release).cloned().unwrap_or_default();
        let since = |base: Option<&MetricsSnapshot>| match base {
            Some(b) => now_m.since(b),
            None => now_m.clone(),
        };
        let all = since(w.baseline.get(release));
        // Latency only after the warm-up (nothing before it); errors from the first request.
        let warm = w.warm.as_ref().map(|warm| since(warm.get(release)));
        to_window(&all, warm.as_ref())
    };
    let canary = window_of(&d.to);
    let stable_w = window_of(&stable);

    let readings = if config.analysis.metric.is_empty() {
        Vec::new()
    } else {
        let instances = canary_addresses(shared, app, &d.to)?;
        let timeout = Duration::from_millis((interval as u64 / 2).clamp(100, 2_000));
        let s = scrape::scrape_all(&instances, &config.analysis.metrics_path, timeout).await;
        let readings = config
            .analysis
            .metric
            .iter()
            .map(|m| MetricReading {
                name: m.name.clone(),
                value: match m.kind {
                    MetricKindConfig::Rate => w
                        .last_scrape
                        .as_ref()
                        .and_then(|prev| scrape::counter_rate(prev, &s, &m.name)),
                    MetricKindConfig::Gauge => scrape::gauge(&s, &m.name),
                },
            })
            .collect();
        w.last_scrape = Some(s);
        readings
    };

    let verdict = analysis::judge(&criteria(config), &canary, &stable_w, &readings);
    store(shared, d, &verdict, now, now - w.started)?;
    Ok(())
}

fn store(
    shared: &Shared,
    d: &Deployment,
    v: &Verdict,
    now: Millis,
    window_ms: i64,
) -> anyhow::Result<()> {
    let outcome = match v.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Inconclusive => "inconclusive",
    };
    let mut figures = serde_json::to_value(v)?;
    figures["window_ms"] = serde_json::json!(window_ms);
    shared
        .store
        .append_verdict(d.id, d.step, now, outcome, &v.summary, &figures)?;
    if v.outcome == Outcome::Fail {
        tracing::warn!(app = %d.app, deployment = d.id, step = d.step, "canary verdict failed: {}", v.summary);
    }
    Ok(())
}

fn criteria(config: &AppConfig) -> Criteria {
    let a = &config.analysis;
    Criteria {
        min_requests: a.min_requests,
        max_error_rate: a.max_error_rate,
        max_p99_us: a.max_p99.map(|d| d.as_millis() * 1000),
        compare: a.compare,
        metrics: a
            .metric
            .iter()
            .map(|m| MetricRule {
                name: m.name.clone(),
                kind: match m.kind {
                    MetricKindConfig::Rate => MetricKind::Rate,
                    MetricKindConfig::Gauge => MetricKind::Gauge,
                },
                min: m.min,
                max: m.max,
            })
            .collect(),
        confidence: a.confidence,
        min_latency_ratio: a.min_latency_ratio,
        min_latency_increase_us: u64::try_from(a.min_latency_increase.std().as_micros())
            .unwrap_or(u64::MAX),
        min_error_diff: a.min_error_diff,
    }
}

/// Every live instance's counters, summed per release.
fn release_metrics(shared: &Shared, app: &str) -> BTreeMap<String, MetricsSnapshot> {
    let mut out: BTreeMap<String, MetricsSnapshot> = BTreeMap::new();
    let prefix = format!("{app}-");
    for (id, l) in shared.live().iter() {
        if id.starts_with(&prefix) {
            out.entry(l.backend.release().to_string())
                .or_default()
                .merge(&l.backend.metrics());
        }
    }
    out
}

fn canary_addresses(
    shared: &Shared,
    app: &str,
    release: &str,
) -> anyhow::Result<Vec<ScrapeTarget>> {
    Ok(shared
        .store
        .instances(Some(app), false)?
        .into_iter()
        .filter(|i| i.release == release && i.pid.is_some() && !i.state.is_leaving())
        .map(|i| ScrapeTarget {
            id: i.id.clone(),
            addr: SocketAddr::new(shared.host_address(&i.host), i.port),
            dial: shared.dial(&i.host, i.port),
        })
        .collect())
}

fn to_window(m: &MetricsSnapshot, warm: Option<&MetricsSnapshot>) -> Window {
    Window {
        requests: m.requests,
        // What users saw: 5xx, including the 502/504 the proxy answers for a failed instance. A
        // connect error that was retried on another instance never reached the user.
        errors: m.status[4],
        latency: warm
            .map(|w| {
                w.buckets()
                    .map(|(low_us, high_us, count)| Bucket {
                        low_us,
                        high_us,
                        count,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
