//! The rollout planner: a pure function of (app config, current release, deployment, observed
//! instances, now) to the actions the controller performs next and the deployment's new state.
//!
//! It is level-triggered, like a Kubernetes controller: it looks only at what is, never at what
//! happened before, so the controller can be killed at any instant and resume from the store
//! (docs/DESIGN.md I4). Timers are deadlines stored in the deployment and the instances.

mod blue_green;
mod canary;
mod converge;
mod dark;
mod external_lb;
mod hold;
mod placement;
mod rebalance;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_canary;
#[cfg(test)]
mod tests_dark;
#[cfg(test)]
mod tests_hold;
#[cfg(test)]
mod tests_rolling;

use crate::config::AppConfig;
use crate::model::{Deployment, EventKind, Instance, MigrationState, Millis, Phase, Strategy};

pub use canary::{instances_for, weight_at};
pub use converge::Converge;
pub use dark::{DARK_INSTANCES, judge as judge_dark};
pub use placement::{LbHost, PlanHost};

/// The analysis verdict for the current step, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every check passed.
    Pass,
    /// A check failed: go back, for this reason.
    Fail(String),
    /// Not enough data yet, with what is missing.
    Inconclusive(String),
}

/// One thing the controller must do. The controller applies every action of a plan, then
/// publishes the resulting split once, so a plan's split changes are atomic (docs/DESIGN.md I6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start one new instance of `release` on `host` (out of the split until admitted).
    Start {
        /// The release to run.
        release: String,
        /// The host to run it on, chosen by the placement stage (`placement.rs`).
        host: String,
    },
    /// Put a healthy instance in the split.
    Admit {
        /// Instance id.
        instance: String,
    },
    /// Take an instance out of the split, let its in-flight requests finish, stop it.
    Drain {
        /// Instance id.
        instance: String,
    },
    /// Take an instance out of the split but keep it running until `until` (blue-green's
    /// previous set, kept warm for an instant rollback).
    KeepWarm {
        /// Instance id.
        instance: String,
        /// When it is to be drained.
        until: Millis,
    },
    /// A warm instance is wanted again: clear its retirement.
    Reuse {
        /// Instance id.
        instance: String,
    },
    /// Run the expand migration of `release` (once per deployment; the controller ignores a
    /// repeat while it runs). No new instance starts before it succeeded.
    Migrate {
        /// The release whose migration runs.
        release: String,
    },
    /// Run the contract migration of `release`, after its deployment succeeded.
    Contract {
        /// The release whose contract step runs.
        release: String,
    },
    /// Make `host`'s health endpoint for the app's external load balancer pass (200: send me
    /// traffic) or fail (503), and record when (`external_lb.rs`).
    Lb {
        /// The host.
        host: String,
        /// 200 rather than 503.
        passing: bool,
    },
    /// Record which release serves 100 % when idle.
    SetCurrent {
        /// The release, or none when the app has nothing serving.
        release: Option<String>,
    },
}

/// What the planner decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Actions to perform, in order.
    pub actions: Vec<Action>,
    /// The deployment with its new phase, step and deadline, when it changed.
    pub deployment: Option<Deployment>,
    /// Events explaining the changes, to append to the log.
    pub events: Vec<(EventKind, String)>,
    /// The earliest time the planner wants to be asked again even if nothing else happens.
    pub wake_at: Option<Millis>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The app's config.
    pub app: &'a AppConfig,
    /// The release serving 100 % when idle.
    pub current: Option<&'a str>,
    /// The app's active (non-final) deployment, if any.
    pub deployment: Option<&'a Deployment>,
    /// The app's instances that are not stopped.
    pub instances: &'a [Instance],
    /// The time of the decision.
    pub now: Millis,
    /// The latest analysis verdict for the deployment's current step (canary).
    pub verdict: Option<&'a Judgement>,
    /// The app's hosts in `hosts` order, with whether each can take new instances.
    pub hosts: &'a [PlanHost],
}

/// Decides what to do next. Pure: same input, same plan.
///
/// The rollout decides how many instances of which release to start and which to drain; the
/// placement stage then picks a host for each start (docs/design-notes.md, "Many hosts").
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut out = decide(input);
    placement::place(&input, &mut out);
    out
}

fn decide(input: PlanInput<'_>) -> Plan {
    let mut out = Plan::default();
    let live: Vec<&Instance> = input
        .instances
        .iter()
        .filter(|i| !i.state.is_leaving())
        .collect();
    let target = match input.deployment {
        Some(d) if d.phase == Phase::Aborting => d.from.as_deref(),
        Some(d) => Some(d.to.as_str()),
        None => input.current,
    };
    retire_warm(&live, target, input.now, &mut out);

    let Some(d) = input.deployment else {
        idle(input, &live, &mut out);
        return out;
    };
    let mut d = d.clone();
    let before = d.clone();
    match d.phase {
        Phase::Pending | Phase::Progressing | Phase::Paused if d.intents.abort => {
            d.intents.abort = false;
            go_back(
                input,
                &live,
                &mut d,
                "aborted by the operator".to_string(),
                &mut out,
            );
        }
        Phase::Progressing if d.intents.pause => {
            d.phase = Phase::Paused;
            out.events.push((
                EventKind::DeploymentPaused,
                format!(
                    "{} {} paused at step {} by the operator",
                    d.app, d.to, d.step
                ),
            ));
        }
        Phase::Paused if !d.intents.pause => {
            d.phase = Phase::Progressing;
            // A pause stops the progress clock: the step gets a whole deadline again, as a
            // resumed Kubernetes Deployment does (docs/design-notes.md). A canary's hold is not
            // extended: its weight was served and judged all along.
            if d.deadline.is_some() {
                d.deadline = Some(
                    input
                        .now
                        .saturating_add(input.app.health.deadline.as_millis_i64()),
                );
            }
            out.events.push((
                EventKind::DeploymentResumed,
                format!("{} {} resumed at step {}", d.app, d.to, d.step),
            ));
            progress(input, &live, &mut d, &mut out);
        }
        Phase::Paused => {
            // Held: nothing moves, but a failing canary still goes back at once, and what a
            // lost host took of the serving release is replaced.
            if let Some(Judgement::Fail(why)) = input.verdict {
                let why = format!("analysis failed at step {}: {why}", d.step);
                go_back(input, &live, &mut d, why, &mut out);
            } else {
                hold::keep_capacity(input, &live, &d, &mut out);
            }
        }
        Phase::Pending => {
            d.phase = Phase::Progressing;
            d.deadline = Some(
                input
                    .now
                    .saturating_add(input.app.health.deadline.as_millis_i64()),
            );
            let from = d.from.as_deref().unwrap_or("nothing");
            out.events.push((
                EventKind::DeploymentStarted,
                format!("{} {} -> {} started ({})", d.app, from, d.to, d.strategy),
            ));
            progress(input, &live, &mut d, &mut out);
        }
        Phase::Progressing => progress(input, &live, &mut d, &mut out),
        Phase::Aborting => abort(input, &live, &mut d, &mut out),
        // Final phases are never planned.
        Phase::Succeeded | Phase::RolledBack | Phase::Failed => {}
    }
    // One-shot: a `baton resume` counts for the hold it finds now, not for a later one.
    d.intents.resume = false;
    if d != before {
        d.updated_at = input.now;
        out.deployment = Some(d);
    }
    out
}

/// Drains warm instances whose time is up, unless the current target wants them back.
fn retire_warm(live: &[&Instance], target: Option<&str>, now: Millis, out: &mut Plan) {
    for i in live {
        let Some(at) = i.retire_at else { continue };
        if i.in_split || Some(i.release.as_str()) == target {
            continue;
        }
        if at <= now {
            out.actions.push(Action::Drain {
                instance: i.id.clone(),
            });
        } else {
            wake(out, at);
        }
    }
}

/// No deployment: keep the current release at its instance count, healthy ones in the split,
/// off drained hosts and spread evenly over the others (`rebalance.rs`).
fn idle(input: PlanInput<'_>, live: &[&Instance], out: &mut Plan) {
    let Some(current) = input.current else { return };
    rebalance::idle(input, current, live, out);
    if let Some(lb) = &input.app.external_lb {
        external_lb::idle(input, lb, live, out);
    }
}

fn progress(input: PlanInput<'_>, live: &[&Instance], d: &mut Deployment, out: &mut Plan) {
    if hold::holds(input, d, out) {
        // No step forward, but a failing canary still goes back at once.
        if let Some(Judgement::Fail(why)) = input.verdict {
            let why = format!("analysis failed at step {}: {why}", d.step);
            go_back(input, live, d, why, out);
        } else {
            hold::keep_capacity(input, live, d, out);
        }
        return;
    }
    let n = input.app.instances;
    // The expand migration runs before any new instance starts, while the old release serves.
    if input.app.migrate.is_some() {
        match &d.migration {
            MigrationState::Done => {}
            MigrationState::Failed(why) => {
                let why = format!(
                    "the migration failed: {why}; users stay on {}",
                    d.from.as_deref().unwrap_or("nothing")
                );
                go_back(input, live, d, why, out);
                return;
            }
            MigrationState::Pending => {
                out.actions.push(Action::Migrate {
                    release: d.to.clone(),
                });
                return;
            }
        }
    }
    if matches!(d.strategy, Strategy::Canary | Strategy::Dark) {
        let next = if d.strategy == Strategy::Dark && d.step == 0 {
            dark::progress(input.app, live, d, input.verdict, input.now, out)
        } else {
            canary::progress(input.app, live, d, input.verdict, input.now, out)
        };
        match next {
            canary::Next::Done => succeed(input, d, n, out),
            canary::Next::Abort(why) => go_back(input, live, d, why, out),
            canary::Next::Continue => match d.deadline {
                Some(deadline) if input.now >= deadline => {
                    let healthy = live
                        .iter()
                        .filter(|i| {
                            i.release == d.to && i.state == crate::model::InstanceState::Healthy
                        })
                        .count();
                    let why = format!(
                        "{} did not become healthy within {} at step {} ({healthy} instances healthy); users stay on {}",
                        d.to,
                        input.app.health.deadline,
                        d.step,
                        d.from.as_deref().unwrap_or("nothing")
                    );
                    go_back(input, live, d, why, out);
                }
                Some(deadline) => wake(out, deadline),
                None => {}
            },
        }
        return;
    }
    let mut c = match (d.strategy, &input.app.external_lb) {
        // Host by host behind an external load balancer, once something serves: a first
        // deployment has no traffic to protect.
        (Strategy::Rolling, Some(lb)) if d.from.is_some() => {
            external_lb::rolling(input, lb, live, d, out)
        }
        (Strategy::Rolling, _) => {
            let r = &input.app.rolling;
            converge::rolling(&d.to, n, r.max_surge, r.max_unavailable, live)
        }
        (Strategy::BlueGreen | Strategy::Canary | Strategy::Dark, _) => {
            let until = input
                .now
                .saturating_add(input.app.blue_green.keep_previous.as_millis_i64());
            blue_green::converge(&d.to, n, until, live)
        }
    };
    if c.exposes {
        d.exposed = true;
    }
    out.actions.append(&mut c.actions);
    if c.step != d.step {
        d.step = c.step;
        d.deadline = Some(
            input
                .now
                .saturating_add(input.app.health.deadline.as_millis_i64()),
        );
        out.events
            .push((EventKind::DeploymentStep, step_message(d, &c, n)));
    }
    if c.done {
        succeed(input, d, c.healthy, out);
        return;
    }
    match d.deadline {
        Some(deadline) if input.now >= deadline => {
            let stay = match d.from.as_deref() {
                Some(from) => format!("users stay on {from}"),
                None => "no user was served by it".to_string(),
            };
            let reason = format!(
                "{} did not become healthy within {} ({} of {} instances healthy); {stay}",
                d.to, input.app.health.deadline, c.healthy, n
            );
            go_back(input, live, d, reason, out);
        }
        Some(deadline) => wake(out, deadline),
        None => {}
    }
}

fn succeed(input: PlanInput<'_>, d: &mut Deployment, healthy: u32, out: &mut Plan) {
    let now = input.now;
    if input
        .app
        .migrate
        .as_ref()
        .is_some_and(|m| m.after.is_some())
    {
        out.actions.push(Action::Contract {
            release: d.to.clone(),
        });
    }
    d.phase = Phase::Succeeded;
    d.finished_at = Some(now);
    d.deadline = None;
    d.pause_until = None;
    d.reason = Some(format!(
        "{} serves 100 % on {healthy} healthy instances",
        d.to
    ));
    out.actions.push(Action::SetCurrent {
        release: Some(d.to.clone()),
    });
    out.events.push((
        EventKind::DeploymentSucceeded,
        format!(
            "{} {} succeeded: {}",
            d.app,
            d.to,
            d.reason.as_deref().unwrap_or_default()
        ),
    ));
}

/// Starts going back to the previous release, in the same decision: nothing is gained by
/// waiting a tick. A canary's weight drops to 0 with it, so the split is 100 % stable in the
/// same publish.
fn go_back(
    input: PlanInput<'_>,
    live: &[&Instance],
    d: &mut Deployment,
    reason: String,
    out: &mut Plan,
) {
    d.phase = Phase::Aborting;
    d.deadline = None;
    d.pause_until = None;
    d.hold.lost.clear();
    d.weight = 0;
    d.reason = Some(reason.clone());
    let kind = if reason.starts_with("analysis failed") {
        EventKind::VerdictFailed
    } else {
        EventKind::DeploymentAborting
    };
    out.events.push((
        kind,
        format!(
            "{} {}: going back to {}: {reason}",
            d.app,
            d.to,
            d.from.as_deref().unwrap_or("nothing")
        ),
    ));
    abort(input, live, d, out);
}

fn abort(input: PlanInput<'_>, live: &[&Instance], d: &mut Deployment, out: &mut Plan) {
    let n = input.app.instances;
    let done = match d.from.as_deref() {
        Some(from) => {
            // Going back is a rolling move to the previous release that never lowers capacity.
            let c = converge::rolling(from, n, n, 0, live);
            out.actions.extend(c.actions);
            c.done
        }
        None => {
            for i in live.iter().filter(|i| i.release == d.to) {
                out.actions.push(Action::Drain {
                    instance: i.id.clone(),
                });
            }
            true
        }
    };
    if !done {
        return;
    }
    d.finished_at = Some(input.now);
    let why = d.reason.clone().unwrap_or_else(|| "aborted".to_string());
    out.actions.push(Action::SetCurrent {
        release: d.from.clone(),
    });
    if d.exposed {
        d.phase = Phase::RolledBack;
        out.events.push((
            EventKind::DeploymentRolledBack,
            format!("{} {} rolled back: {why}", d.app, d.to),
        ));
    } else {
        d.phase = Phase::Failed;
        out.events.push((
            EventKind::DeploymentFailed,
            format!("{} {} failed: {why}", d.app, d.to),
        ));
    }
}

fn step_message(d: &Deployment, c: &Converge, n: u32) -> String {
    match d.strategy {
        Strategy::Rolling => format!("{} of {} instances on {} serving", c.step, n, d.to),
        Strategy::BlueGreen | Strategy::Canary | Strategy::Dark => {
            format!("switched 100 % to {} ({} instances)", d.to, n)
        }
    }
}

fn wake(out: &mut Plan, at: Millis) {
    out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at)));
}
