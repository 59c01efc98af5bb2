//! Canary: the new release gets a growing weight of traffic, step by step, while the stable
//! release stays at full size (so going back is instant, docs/DESIGN.md I3); each step holds for its
//! pause and goes on only on a passing verdict; the last step replaces the stable set.

use crate::config::{AppConfig, OnInconclusive, Pause};
use crate::model::{Deployment, EventKind, Instance, InstanceState, Millis, Promote};

use super::{Action, Judgement, Plan, blue_green, wake};

/// What the canary decided besides its actions.
pub enum Next {
    /// Keep going (or holding) as planned.
    Continue,
    /// The deployment succeeded.
    Done,
    /// Go back to the stable release, for this reason.
    Abort(String),
}

/// The weight in force at step `idx` (0-based): the step's own, or the last one before it.
pub fn weight_at(app: &AppConfig, idx: usize) -> u32 {
    app.canary.steps[..=idx.min(app.canary.steps.len() - 1)]
        .iter()
        .rev()
        .find_map(|s| s.weight)
        .unwrap_or(0)
}

/// Canary instances needed for `weight` percent of `n` instances' traffic (at least one).
pub fn instances_for(n: u32, weight: u32) -> u32 {
    (n * weight).div_ceil(100).clamp(1, n)
}

pub fn progress(
    app: &AppConfig,
    live: &[&Instance],
    d: &mut Deployment,
    verdict: Option<&Judgement>,
    now: Millis,
    out: &mut Plan,
) -> Next {
    let steps = &app.canary.steps;
    let n = app.instances;
    if d.step == 0 {
        d.step = 1;
    }
    if let Some(Judgement::Fail(why)) = verdict {
        return Next::Abort(format!("analysis failed at step {}: {why}", d.step));
    }
    match d.intents.promote.take() {
        Some(Promote::Full) if (d.step as usize) < steps.len() => {
            out.events.push((
                EventKind::DeploymentPromoted,
                format!(
                    "{} {} promoted to 100 %, skipping the remaining steps and analysis",
                    d.app, d.to
                ),
            ));
            enter_step(app, d, steps.len() as u32, now);
        }
        Some(Promote::Step) if (d.step as usize) < steps.len() => {
            out.events.push((
                EventKind::DeploymentPromoted,
                format!("{} {} promoted past step {}", d.app, d.to, d.step),
            ));
            enter_step(app, d, d.step + 1, now);
        }
        _ => {}
    }
    let idx = d.step as usize - 1;
    let w = weight_at(app, idx);

    if w >= 100 {
        // The last step: bring the canary to full size beside the stable set, then switch 100 %
        // in one publish and let the stable set go.
        let c = blue_green::converge(&d.to, n, now, live);
        out.actions.extend(c.actions);
        if c.done {
            d.weight = 100;
            d.exposed = true;
            return Next::Done;
        }
        return Next::Continue;
    }

    let want = instances_for(n, w.max(1)) as usize;
    let canary: Vec<&&Instance> = live.iter().filter(|i| i.release == d.to).collect();
    for _ in canary.len()..want {
        out.actions.push(Action::Start {
            release: d.to.clone(),
            host: String::new(),
        });
    }
    for i in &canary {
        if i.retire_at.is_some() {
            out.actions.push(Action::Reuse {
                instance: i.id.clone(),
            });
        }
        if i.state == InstanceState::Healthy && !i.in_split {
            out.actions.push(Action::Admit {
                instance: i.id.clone(),
            });
        }
    }
    let ready = canary
        .iter()
        .filter(|i| i.state == InstanceState::Healthy)
        .count()
        >= want;
    if !ready {
        return Next::Continue;
    }
    if coming_up(d) {
        d.weight = w;
        d.exposed |= w > 0;
        d.deadline = None;
        d.pause_until = match steps[idx].pause {
            Some(Pause::For(p)) => Some(now.saturating_add(p.as_millis_i64())),
            Some(Pause::Forever) => None,
            None => Some(now),
        };
        let hold = match steps[idx].pause {
            Some(Pause::For(p)) => format!("for {p}"),
            Some(Pause::Forever) => "until `baton promote`".to_string(),
            None => "briefly".to_string(),
        };
        out.events.push((
            EventKind::DeploymentStep,
            format!(
                "step {}/{}: {} gets {w} % of requests on {want} instances; holding {hold}",
                d.step,
                steps.len(),
                d.to
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
    let go_on = match verdict {
        Some(Judgement::Pass) => true,
        Some(Judgement::Fail(_)) => unreachable!("handled above"),
        Some(Judgement::Inconclusive(_)) | None => match app.analysis.on_inconclusive {
            OnInconclusive::Pass => true,
            OnInconclusive::Hold => false,
            OnInconclusive::Fail => {
                let why = match verdict {
                    Some(Judgement::Inconclusive(why)) => why.clone(),
                    _ => "no verdict yet".to_string(),
                };
                return Next::Abort(format!(
                    "step {} ended without a verdict ({why}) and on_inconclusive = \"fail\"",
                    d.step
                ));
            }
        },
    };
    if go_on {
        enter_step(app, d, d.step + 1, now);
    }
    Next::Continue
}

/// Whether the current step is still bringing its instances up (under the progress deadline)
/// rather than holding: a step's hold begins when its instances are ready, and that is when its
/// deadline goes. Read from the deadline, not from the weight, because a step may keep the
/// previous weight (no `weight`, or the same one).
fn coming_up(d: &Deployment) -> bool {
    d.deadline.is_some()
}

/// Moves to step `step`: its instances must be ready within `health.deadline`; its hold starts
/// once they are.
fn enter_step(app: &AppConfig, d: &mut Deployment, step: u32, now: Millis) {
    d.step = step;
    d.pause_until = None;
    d.deadline = Some(now.saturating_add(app.health.deadline.as_millis_i64()));
}
