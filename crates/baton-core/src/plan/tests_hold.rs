//! Table tests of a deployment that holds while a host of its app is lost (`hold.rs`).

use super::placement::tests::hosts_of_starts;
use super::tests::{NOW, admits, app, deployment, drains, inst, starts};
use super::*;
use crate::model::InstanceState::{self, *};

fn on(host: &str, n: u32, release: &str, state: InstanceState, in_split: bool) -> Instance {
    let mut i = inst(n, release, state, in_split);
    i.host = host.to_string();
    i
}

/// Hosts `a` and `b`; `b` lost when asked (and drained when asked).
fn hosts(b_lost: bool, b_drained: bool) -> Vec<PlanHost> {
    let mut b = PlanHost::up("b");
    b.lost = b_lost;
    b.drained = b_drained;
    b.schedulable = !b_lost && !b_drained;
    vec![PlanHost::up("a"), b]
}

fn run_at(
    app: &AppConfig,
    d: &Deployment,
    set: &[Instance],
    hosts: &[PlanHost],
    now: Millis,
    verdict: Option<&Judgement>,
) -> Plan {
    plan(PlanInput {
        app,
        current: d.from.as_deref(),
        deployment: Some(d),
        instances: set,
        now,
        verdict,
        hosts,
    })
}

fn run(app: &AppConfig, d: &Deployment, set: &[Instance], hosts: &[PlanHost]) -> Plan {
    run_at(app, d, set, hosts, NOW, None)
}

fn four(strategy: &str) -> AppConfig {
    let mut app = app(strategy);
    app.instances = 4;
    app
}

fn kinds(p: &Plan) -> Vec<EventKind> {
    p.events.iter().map(|(k, _)| *k).collect()
}

/// A rolling 1.0.0 -> 1.1.0 after host `b` was lost: `b`'s instances (one old, one new) were
/// fenced, so `a` keeps one of each, serving (step 1: one new instance serves).
fn rolling_after_the_loss() -> (Deployment, Vec<Instance>) {
    let mut d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::Rolling,
        Phase::Progressing,
    );
    d.step = 1;
    let set = vec![
        on("a", 1, "1.0.0", Healthy, true),
        on("a", 5, "1.1.0", Healthy, true),
    ];
    (d, set)
}

#[test]
fn a_lost_host_holds_a_rolling_deployment_and_replaces_the_serving_release_on_the_others() {
    let app = four("rolling");
    let (d, set) = rolling_after_the_loss();
    let p = run(&app, &d, &set, &hosts(true, false));
    assert_eq!(kinds(&p), [EventKind::DeploymentHeld]);
    let msg = &p.events[0].1;
    assert!(
        msg.contains("holds at step 1: host b is lost")
            && msg.contains("`baton resume`")
            && msg.contains("goes back to 1.0.0"),
        "{msg}"
    );
    let started: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { release, .. } => Some(release.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["1.0.0", "1.0.0"], "capacity of the old release");
    assert_eq!(hosts_of_starts(&p), ["a", "a"]);
    assert!(drains(&p).is_empty(), "nothing of the old release leaves");
    let held = p.deployment.unwrap();
    assert_eq!(held.hold.lost, ["b"]);
    assert_eq!(
        (held.phase, held.step, held.deadline),
        (Phase::Progressing, 1, d.deadline)
    );

    // Next tick: the replacements start; one of them is healthy and joins the split, a new
    // release instance that became healthy does not, and no second event is recorded.
    let mut set = set;
    set.push(on("a", 6, "1.0.0", Healthy, false));
    set.push(on("a", 7, "1.0.0", Starting, false));
    set.push(on("a", 8, "1.1.0", Healthy, false));
    let p = run(&app, &held, &set, &hosts(true, false));
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(starts(&p), 0);
    assert_eq!(admits(&p), ["web-6"]);
    assert!(drains(&p).is_empty());
    assert!(p.deployment.is_none(), "nothing changed: {p:?}");

    // Its deadline does not run out while it holds.
    let p = run_at(&app, &held, &set, &hosts(true, false), NOW + 600_000, None);
    assert!(p.deployment.is_none(), "{p:?}");
}

#[test]
fn the_hold_ends_when_the_host_is_back_with_a_whole_deadline() {
    let app = four("rolling");
    let (d, set) = rolling_after_the_loss();
    let held = run(&app, &d, &set, &hosts(true, false)).deployment.unwrap();
    let later = NOW + 600_000;
    let p = run_at(&app, &held, &set, &hosts(false, false), later, None);
    assert_eq!(kinds(&p), [EventKind::DeploymentResumed]);
    assert!(
        p.events[0].1.contains("resumes at step 1: host b is back"),
        "{:?}",
        p.events
    );
    let d = p.deployment.clone().unwrap();
    assert!(!d.hold.holds());
    assert_eq!(
        d.deadline,
        Some(later + 60_000),
        "the step gets a whole deadline"
    );
    assert_eq!(
        hosts_of_starts(&p),
        ["b", "b", "a"],
        "the rollout goes on: {p:?}"
    );
    assert!(
        p.actions.iter().all(|a| match a {
            Action::Start { release, .. } => release == "1.1.0",
            _ => true,
        }),
        "{p:?}"
    );
}

#[test]
fn a_drained_or_removed_lost_host_ends_the_hold() {
    let app = four("rolling");
    let (d, set) = rolling_after_the_loss();
    let held = run(&app, &d, &set, &hosts(true, false)).deployment.unwrap();

    let p = run(&app, &held, &set, &hosts(true, true));
    assert!(
        p.events[0].1.contains("host b was drained"),
        "{:?}",
        p.events
    );
    assert!(!p.deployment.unwrap().hold.holds());

    let p = run(&app, &held, &set, &[PlanHost::up("a")]);
    assert!(
        p.events[0]
            .1
            .contains("host b is no longer one of the app's hosts"),
        "{:?}",
        p.events
    );
    // A host drained before it was lost never holds anything.
    let p = run(&app, &d, &set, &hosts(true, true));
    assert!(!kinds(&p).contains(&EventKind::DeploymentHeld), "{p:?}");
}

#[test]
fn resume_goes_on_without_the_lost_host_until_it_is_lost_again() {
    let app = four("rolling");
    let (d, set) = rolling_after_the_loss();
    let mut held = run(&app, &d, &set, &hosts(true, false)).deployment.unwrap();
    held.intents.resume = true;
    let p = run(&app, &held, &set, &hosts(true, false));
    assert_eq!(kinds(&p), [EventKind::DeploymentResumed]);
    assert!(
        p.events[0]
            .1
            .contains("goes on at step 1 without host b (lost)"),
        "{:?}",
        p.events
    );
    assert_eq!(hosts_of_starts(&p), ["a", "a", "a"], "on the hosts left");
    let going = p.deployment.unwrap();
    assert!(!going.intents.resume, "one-shot");
    assert_eq!(
        (going.hold.lost.len(), going.hold.without.clone()),
        (0, vec!["b".to_string()])
    );

    // Still lost: it goes on, with no new event.
    let p = run(&app, &going, &set, &hosts(true, false));
    assert!(p.events.is_empty(), "{:?}", p.events);

    // Back, then lost again: it holds again.
    let back = run(&app, &going, &set, &hosts(false, false))
        .deployment
        .unwrap();
    assert!(back.hold.without.is_empty());
    let p = run(&app, &back, &set, &hosts(true, false));
    assert_eq!(kinds(&p), [EventKind::DeploymentHeld]);

    // A resume that finds no hold is spent and changes nothing else.
    let mut d = d.clone();
    d.intents.resume = true;
    let p = run(&app, &d, &set, &hosts(false, false));
    assert!(!p.deployment.unwrap().intents.resume);
}

#[test]
fn abort_goes_back_at_once_while_holding() {
    let app = four("rolling");
    let (d, set) = rolling_after_the_loss();
    let mut held = run(&app, &d, &set, &hosts(true, false)).deployment.unwrap();
    held.intents.abort = true;
    let p = run(&app, &held, &set, &hosts(true, false));
    let d = p.deployment.clone().unwrap();
    assert_eq!(d.phase, Phase::Aborting);
    assert!(!d.hold.holds(), "an aborting deployment holds for nothing");
    assert_eq!(hosts_of_starts(&p), ["a", "a", "a"], "back to 1.0.0 on a");
}

#[test]
fn a_failing_canary_still_goes_back_while_holding() {
    let app = four("canary");
    let mut d = deployment(Some("1.0.0"), "1.1.0", Strategy::Canary, Phase::Progressing);
    (d.step, d.weight, d.deadline) = (1, 5, None);
    let set = vec![
        on("a", 1, "1.0.0", Healthy, true),
        on("a", 2, "1.0.0", Healthy, true),
        on("a", 5, "1.1.0", Healthy, true),
    ];
    // Blue-green and canary keep the old release at full size: two replacements.
    let p = run(&app, &d, &set, &hosts(true, false));
    assert_eq!(kinds(&p), [EventKind::DeploymentHeld]);
    assert_eq!(hosts_of_starts(&p), ["a", "a"]);
    let held = p.deployment.unwrap();

    let fail = Judgement::Fail("error rate 9 %".into());
    let p = run_at(&app, &held, &set, &hosts(true, false), NOW, Some(&fail));
    assert_eq!(p.deployment.unwrap().phase, Phase::Aborting);

    // A promote goes on without the lost host, as a resume does.
    let mut promoted = held.clone();
    promoted.intents.promote = Some(crate::model::Promote::Step);
    let p = run(&app, &promoted, &set, &hosts(true, false));
    let d = p.deployment.unwrap();
    assert_eq!((d.step, d.hold.without.clone()), (2, vec!["b".to_string()]));
}

#[test]
fn a_first_deployment_holds_with_nothing_to_keep_and_a_new_one_holds_from_its_start() {
    let app = four("rolling");
    let first = deployment(None, "1.0.0", Strategy::Rolling, Phase::Pending);
    let p = run(&app, &first, &[], &hosts(true, false));
    assert_eq!(
        kinds(&p),
        [EventKind::DeploymentStarted, EventKind::DeploymentHeld]
    );
    assert_eq!(starts(&p), 0);
    assert!(
        p.events[1].1.contains("`baton abort` stops it"),
        "{:?}",
        p.events
    );

    let bg = deployment(Some("1.0.0"), "1.1.0", Strategy::BlueGreen, Phase::Pending);
    let set: Vec<Instance> = (1..=2)
        .map(|n| on("a", n, "1.0.0", Healthy, true))
        .collect();
    let p = run(&app, &bg, &set, &hosts(true, false));
    assert_eq!(
        kinds(&p),
        [EventKind::DeploymentStarted, EventKind::DeploymentHeld]
    );
    let started: Vec<_> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Start { release, .. } if release == "1.0.0"))
        .collect();
    assert_eq!(
        started.len(),
        2,
        "the serving release back to 4, nothing of 1.1.0"
    );
    assert_eq!(starts(&p), 2);
}

#[test]
fn a_paused_deployment_replaces_what_a_lost_host_took_and_nothing_else() {
    let app = four("rolling");
    let (mut d, set) = rolling_after_the_loss();
    d.phase = Phase::Paused;
    d.intents.pause = true;
    let p = run(&app, &d, &set, &hosts(true, false));
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(hosts_of_starts(&p), ["a", "a"]);
    assert!(p.deployment.is_none());
    // With the whole fleet, a pause starts nothing.
    let full: Vec<Instance> = [
        on("a", 1, "1.0.0", Healthy, true),
        on("b", 2, "1.0.0", Healthy, true),
        on("b", 3, "1.0.0", Healthy, true),
        on("a", 5, "1.1.0", Healthy, true),
        on("b", 6, "1.1.0", Starting, false),
    ]
    .to_vec();
    let p = run(&app, &d, &full, &hosts(false, false));
    assert!(p.actions.is_empty(), "{p:?}");
}

#[test]
fn a_new_instance_still_starting_is_no_capacity_while_holding() {
    let app = four("rolling");
    let (d, mut set) = rolling_after_the_loss();
    set.push(on("a", 6, "1.1.0", Starting, false));
    let p = run(&app, &d, &set, &hosts(true, false));
    assert_eq!(
        hosts_of_starts(&p),
        ["a", "a"],
        "it joins no split while holding"
    );
    assert!(drains(&p).is_empty(), "nor does it leave: {p:?}");
}
