//! Table tests of the dark step: one instance beside the stable set, never in the split; held
//! until promote, a passing verdict after `dark.duration`, or a failing verdict.

use super::tests::{NOW, admits, app, deployment, drains, inst, old_set, starts};
use super::*;
use crate::duration::Duration;
use crate::model::InstanceState::*;
use crate::model::Promote;

fn run(
    app: &AppConfig,
    d: &Deployment,
    set: &[Instance],
    now: Millis,
    v: Option<&Judgement>,
) -> Plan {
    let hosts = [PlanHost::up(crate::model::LOCAL_HOST)];
    plan(PlanInput {
        app,
        current: Some("1.0.0"),
        deployment: Some(d),
        instances: set,
        now,
        verdict: v,
        hosts: &hosts,
    })
}

fn dark(phase: Phase) -> Deployment {
    deployment(Some("1.0.0"), "2.0.0", Strategy::Dark, phase)
}

/// Holding the dark step (its instance is healthy, so no progress deadline runs).
fn holding(until: Option<Millis>) -> Deployment {
    let mut d = dark(Phase::Progressing);
    (d.step, d.pause_until, d.deadline) = (0, until, None);
    d
}

fn with_dark(in_split: bool) -> Vec<Instance> {
    let mut set = old_set();
    set.push(inst(4, "2.0.0", Healthy, in_split));
    set
}

#[test]
fn the_dark_step_starts_one_instance_and_never_admits_it() {
    let app = app("dark");
    let p = run(&app, &dark(Phase::Pending), &old_set(), NOW, None);
    assert_eq!(starts(&p), 1);
    assert!(drains(&p).is_empty(), "the stable set stays whole");
    let d = p.deployment.unwrap();
    assert_eq!(
        (d.phase, d.step, d.weight, d.exposed),
        (Phase::Progressing, 0, 0, false)
    );
    // Healthy: still not admitted; it holds until `baton promote`.
    let p = run(&app, &d, &with_dark(false), NOW + 1, None);
    assert!(admits(&p).is_empty(), "{:?}", p.actions);
    let d = p.deployment.unwrap();
    assert_eq!((d.deadline, d.pause_until), (None, None));
    assert!(
        p.events
            .iter()
            .any(|(_, m)| m.contains("users see only 1.0.0"))
    );
    let p = run(
        &app,
        &d,
        &with_dark(false),
        NOW + 3_600_000,
        Some(&Judgement::Pass),
    );
    assert!(p.deployment.is_none() && p.actions.is_empty(), "{p:?}");
}

#[test]
fn a_failing_verdict_goes_back_and_nobody_was_served() {
    let app = app("dark");
    let v = Judgement::Fail("12 % of compared answers differ".into());
    let p = run(&app, &holding(None), &with_dark(false), NOW, Some(&v));
    assert_eq!(drains(&p), vec!["web-4"]);
    let d = p.deployment.unwrap();
    assert_eq!(
        d.phase,
        Phase::Failed,
        "never exposed: failed, not rolled back"
    );
    assert!(d.reason.unwrap().contains("no user was served"));
    assert_eq!(p.events[0].0, EventKind::VerdictFailed);
}

#[test]
fn promote_continues_as_a_canary_from_its_first_step() {
    let app = app("dark");
    let mut d = holding(None);
    d.intents.promote = Some(Promote::Step);
    let p = run(&app, &d, &with_dark(false), NOW, None);
    assert!(
        drains(&p).is_empty(),
        "no env of its own: the instance is reused"
    );
    let d = p.deployment.unwrap();
    assert_eq!(d.step, 1);
    assert!(d.deadline.is_some());
    // Step 1 is the canary's: the instance joins the split with the step's weight.
    let p = run(&app, &d, &with_dark(false), NOW + 1, None);
    assert_eq!(admits(&p), vec!["web-4"]);
    assert_eq!(p.deployment.unwrap().weight, 5);
}

#[test]
fn instances_with_their_own_datastore_never_serve_users() {
    let mut app = app("dark");
    app.dark
        .env
        .insert("DATABASE_URL".into(), "sqlite://dark".into());
    let mut d = holding(None);
    d.intents.promote = Some(Promote::Full);
    let p = run(&app, &d, &with_dark(false), NOW, None);
    assert_eq!(drains(&p), vec!["web-4"]);
    assert_eq!(p.deployment.unwrap().step, app.canary.steps.len() as u32);
}

#[test]
fn a_duration_holds_then_goes_on_only_with_a_pass() {
    let mut app = app("dark");
    app.dark.duration = Some(Duration::from_secs(30));
    let mut d = dark(Phase::Progressing);
    d.deadline = Some(NOW + 60_000);
    let p = run(&app, &d, &with_dark(false), NOW, None);
    assert_eq!(p.wake_at, Some(NOW + 30_000));
    let d = p.deployment.unwrap();
    assert_eq!(d.pause_until, Some(NOW + 30_000));
    let inconclusive = Judgement::Inconclusive("10 of 50 compared".into());
    let p = run(
        &app,
        &d,
        &with_dark(false),
        NOW + 30_000,
        Some(&inconclusive),
    );
    assert!(p.deployment.is_none(), "keeps copying without a pass");
    let p = run(
        &app,
        &d,
        &with_dark(false),
        NOW + 30_000,
        Some(&Judgement::Pass),
    );
    assert_eq!(p.deployment.unwrap().step, 1);
}

#[test]
fn a_dark_instance_that_never_becomes_healthy_fails_at_the_deadline() {
    let app = app("dark");
    let mut d = dark(Phase::Progressing);
    d.deadline = Some(NOW);
    let mut set = old_set();
    set.push(inst(4, "2.0.0", Starting, false));
    let p = run(&app, &d, &set, NOW, None);
    let d = p.deployment.unwrap();
    assert_eq!(d.phase, Phase::Failed);
    assert!(d.reason.unwrap().contains("did not become healthy"));
}
