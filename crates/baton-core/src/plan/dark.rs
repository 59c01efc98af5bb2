//! Dark launch: step 0 of a `dark` deployment. The new release runs one instance beside the
//! stable set and takes no user traffic (never admitted to the split); the proxy copies
//! requests to it and the analysis judges the differences. It holds until `baton promote`,
//! until `dark.duration` has passed with a passing verdict, or until the verdict fails; then
//! the deployment continues as a canary with the app's canary steps (step 1 on).

use crate::config::AppConfig;
use crate::model::{Deployment, EventKind, Instance, InstanceState, Millis, Promote};

use super::canary::Next;
use super::{Action, Judgement, Plan, wake};

/// Instances of the dark release.
pub const DARK_INSTANCES: usize = 1;

pub fn progress(
    app: &AppConfig,
    live: &[&Instance],
    d: &mut Deployment,
    verdict: Option<&Judgement>,
    now: Millis,
    out: &mut Plan,
) -> Next {
    if let Some(Judgement::Fail(why)) = verdict {
        return Next::Abort(format!(
            "analysis failed at the dark step: {why}; no user was served by {}",
            d.to
        ));
    }
    let dark: Vec<&&Instance> = live.iter().filter(|i| i.release == d.to).collect();
    if let Some(promote) = d.intents.promote.take() {
        let (step, how) = match promote {
            Promote::Full => (app.canary.steps.len() as u32, "to 100 %"),
            Promote::Step => (1, "to the first canary step"),
        };
        out.events.push((
            EventKind::DeploymentPromoted,
            format!("{} {} promoted past the dark step, {how}", d.app, d.to),
        ));
        leave_dark(app, &dark, d, step, now, out);
        return Next::Continue;
    }
    for _ in dark.len()..DARK_INSTANCES {
        out.actions.push(Action::Start {
            release: d.to.clone(),
            host: String::new(),
        });
    }
    for i in &dark {
        if i.retire_at.is_some() {
            out.actions.push(Action::Reuse {
                instance: i.id.clone(),
            });
        }
    }
    let healthy = dark
        .iter()
        .filter(|i| i.state == InstanceState::Healthy)
        .count();
    if healthy < DARK_INSTANCES {
        return Next::Continue; // the caller watches the progress deadline
    }
    if d.deadline.is_some() {
        d.deadline = None;
        d.pause_until = app
            .dark
            .duration
            .map(|p| now.saturating_add(p.as_millis_i64()));
        let methods = if app.dark.write {
            "all"
        } else {
            "GET, HEAD and OPTIONS"
        };
        let hold = match app.dark.duration {
            Some(p) => format!("for {p}"),
            None => "until `baton promote`".to_string(),
        };
        out.events.push((
            EventKind::DeploymentStep,
            format!(
                "dark: {} gets copies of {} % of {methods} requests; users see only {}; holding {hold}",
                d.to,
                app.dark.fraction * 100.0,
                d.from.as_deref().unwrap_or("nothing")
            ),
        ));
        if let Some(at) = d.pause_until {
            wake(out, at);
        }
        return Next::Continue;
    }
    let Some(until) = d.pause_until else {
        return Next::Continue; // waits for `baton promote`
    };
    if now < until {
        wake(out, until);
        return Next::Continue;
    }
    // Held long enough: on only with a passing verdict (an inconclusive one keeps copying).
    if verdict == Some(&Judgement::Pass) {
        out.events.push((
            EventKind::DeploymentStep,
            format!(
                "{} {}: the dark step passed; continuing as a canary",
                d.app, d.to
            ),
        ));
        leave_dark(app, &dark, d, 1, now, out);
    }
    Next::Continue
}

/// Moves on to canary step `step`. Instances started with the dark release's own `env` (its
/// own datastore) must not serve users: they go, and the canary starts fresh ones.
fn leave_dark(
    app: &AppConfig,
    dark: &[&&Instance],
    d: &mut Deployment,
    step: u32,
    now: Millis,
    out: &mut Plan,
) {
    if !app.dark.env.is_empty() {
        for i in dark {
            out.actions.push(Action::Drain {
                instance: i.id.clone(),
            });
        }
    }
    d.step = step;
    d.pause_until = None;
    d.deadline = Some(now.saturating_add(app.health.deadline.as_millis_i64()));
}

/// The dark step's verdict from its comparison counts: fail when more than `max_diff_rate`
/// of at least `min_requests` compared copies differed; pass when no rate is set.
pub fn judge(config: &crate::config::DarkConfig, compared: u64, differing: u64) -> Judgement {
    let Some(max) = config.max_diff_rate else {
        return Judgement::Pass;
    };
    if compared < config.min_requests {
        return Judgement::Inconclusive(format!(
            "{compared} of {} compared copies needed",
            config.min_requests
        ));
    }
    let rate = differing as f64 / compared as f64;
    let figures = format!(
        "{differing} of {compared} compared answers differ ({:.1} %, max {:.1} %)",
        rate * 100.0,
        max * 100.0
    );
    if rate > max {
        Judgement::Fail(figures)
    } else {
        Judgement::Pass
    }
}

#[cfg(test)]
mod judge_tests {
    use super::*;
    use crate::config::DarkConfig;

    #[test]
    fn judged_only_with_a_rate_and_enough_copies() {
        let mut c = DarkConfig::default();
        assert_eq!(judge(&c, 0, 0), Judgement::Pass);
        c.max_diff_rate = Some(0.05);
        c.min_requests = 50;
        assert!(matches!(judge(&c, 49, 49), Judgement::Inconclusive(_)));
        assert_eq!(judge(&c, 100, 5), Judgement::Pass);
        let Judgement::Fail(why) = judge(&c, 100, 6) else {
            panic!("6 % > 5 %")
        };
        assert_eq!(why, "6 of 100 compared answers differ (6.0 %, max 5.0 %)");
    }
}
