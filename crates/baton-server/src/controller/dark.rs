//! Dark launches on the controller's side: one mirror per app whose deployment is in its dark
//! step (kept, with its report, until the app's next deployment), its target in the split, and
//! the dark step's verdict from the mirror's counts, stored like a canary's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_core::config::{AppConfig, DarkConfig};
use baton_core::model::{Deployment, Instance, Millis, Phase, Strategy};
use baton_core::plan::{Judgement, judge_dark};
use baton_proxy::mirror::{DarkReport, Mirror, MirrorConfig, MirrorRoute};
use hyper::header::HeaderName;

use crate::shared::Shared;

/// The apps' dark launches, by unit key.
#[derive(Default)]
pub struct Mirrors(Mutex<HashMap<String, DarkLaunch>>);

/// One deployment's dark launch.
#[derive(Clone)]
pub struct DarkLaunch {
    /// The deployment it belongs to.
    pub deployment: i64,
    /// The dark release.
    pub release: String,
    /// The release users see.
    pub stable: Option<String>,
    /// The copies' queue and the comparison's records.
    pub mirror: Arc<Mirror>,
    /// When it was last judged.
    judged_at: Millis,
}

impl Mirrors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DarkLaunch>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The app's latest dark launch, running or over.
    pub fn get(&self, app: &str) -> Option<DarkLaunch> {
        self.lock().get(app).cloned()
    }
}

/// Whether `d` is in its dark step: copies flow.
pub fn in_dark_step(d: &Deployment) -> bool {
    d.strategy == Strategy::Dark
        && d.step == 0
        && matches!(d.phase, Phase::Pending | Phase::Progressing | Phase::Paused)
}

/// The proxy's view of `[apps.X.dark]` (validated at load: the names parse).
pub fn mirror_config(c: &DarkConfig) -> MirrorConfig {
    let name = |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok();
    MirrorConfig {
        fraction: c.fraction,
        header: name(&c.header).unwrap_or(HeaderName::from_static("x-baton-shadow")),
        write: c.write,
        compare_headers: c.compare_headers.iter().filter_map(|h| name(h)).collect(),
        timeout: std::time::Duration::from_millis(c.timeout.as_millis()),
        noise_sample: c.noise_sample,
    }
}

/// The mirror target of each app in its dark step, for the split being built: its mirror
/// (made on the step's first sight) and the dark release's live instances.
pub fn routes(
    shared: &Shared,
    instances: &[Instance],
) -> anyhow::Result<HashMap<String, MirrorRoute>> {
    let mut out = HashMap::new();
    let snapshot = shared.config();
    for app in snapshot.units.keys() {
        let Some(d) = shared.store.active_deployment(app)?.filter(in_dark_step) else {
            continue;
        };
        let Some(config) = shared.app(app) else {
            continue;
        };
        let mirror = mirror_for(shared, app, &d, &config);
        let live = shared.live();
        let dark = instances
            .iter()
            .filter(|i| &i.app == app && i.release == d.to && !i.in_split)
            .filter(|i| !i.state.is_leaving())
            .filter_map(|i| live.get(&i.id).filter(|l| !l.stopping))
            .map(|l| l.backend.clone())
            .collect();
        out.insert(app.clone(), MirrorRoute { mirror, dark });
    }
    Ok(out)
}

fn mirror_for(shared: &Shared, app: &str, d: &Deployment, config: &AppConfig) -> Arc<Mirror> {
    let mut mirrors = shared.mirrors.lock();
    match mirrors.get(app) {
        Some(l) if l.deployment == d.id => {
            l.mirror.set_config(mirror_config(&config.dark));
            l.mirror.clone()
        }
        _ => {
            let mirror = Mirror::new(mirror_config(&config.dark));
            mirrors.insert(
                app.to_string(),
                DarkLaunch {
                    deployment: d.id,
                    release: d.to.clone(),
                    stable: d.from.clone(),
                    mirror: mirror.clone(),
                    judged_at: 0,
                },
            );
            mirror
        }
    }
}

/// Judges `d`'s dark step every `analysis.interval` from its mirror's counts and stores the
/// verdict (step 0) with the report's figures.
pub fn judge(
    shared: &Shared,
    config: &AppConfig,
    d: &Deployment,
    now: Millis,
) -> anyhow::Result<()> {
    let report = {
        let mut mirrors = shared.mirrors.lock();
        let Some(l) = mirrors.get_mut(&d.app).filter(|l| l.deployment == d.id) else {
            return Ok(());
        };
        if now < l.judged_at + config.analysis.interval.as_millis_i64() {
            return Ok(());
        }
        l.judged_at = now;
        l.mirror.report()
    };
    let (outcome, summary) = match judge_dark(&config.dark, report.compared, report.differing) {
        Judgement::Pass => ("pass", format!("pass: {}", figures(&report))),
        Judgement::Fail(why) => ("fail", format!("fail: {why}")),
        Judgement::Inconclusive(why) => ("inconclusive", format!("inconclusive: {why}")),
    };
    let figures = serde_json::json!({
        "copied": report.copied,
        "compared": report.compared,
        "differing": report.differing,
        "diff_rate": report.diff_rate(),
        "dropped_queue_full": report.dropped_queue_full,
        "dropped_failed": report.dropped_failed,
    });
    shared
        .store
        .append_verdict(d.id, d.step, now, outcome, &summary, &figures)?;
    if outcome == "fail" {
        tracing::warn!(app = %d.app, deployment = d.id, "dark launch verdict failed: {summary}");
    }
    Ok(())
}

fn figures(r: &DarkReport) -> String {
    format!("{} of {} compared answers differ", r.differing, r.compared)
}

/// The env an instance of `inst.release` starts with: the app's, plus `[apps.X.dark] env` for
/// the dark release while its deployment is in the dark step (its own datastore).
pub fn env_for(
    shared: &Shared,
    app: &AppConfig,
    inst: &Instance,
) -> std::collections::BTreeMap<String, String> {
    let mut env = app.env.clone();
    let dark = shared
        .store
        .active_deployment(&inst.app)
        .ok()
        .flatten()
        .filter(|d| in_dark_step(d) && d.to == inst.release);
    if dark.is_some() {
        env.extend(app.dark.env.clone());
    }
    env
}
