//! Table tests of the planner: fixed inputs, expected actions and phases.

use std::path::Path;

use super::*;
use crate::config::Config;
use crate::model::InstanceState::{self, *};

pub(super) const NOW: Millis = 1_000_000;

pub(super) fn app(strategy: &str) -> AppConfig {
    let text = format!(
        r#"[apps.web]
listen = "127.0.0.1:8080"
instances = 3
command = ["x"]
strategy = "{strategy}"
[apps.web.health]
deadline = "60s"
[apps.web.blue_green]
keep_previous = "5m"
"#
    );
    Config::parse(&text, Path::new("t.toml"))
        .unwrap()
        .apps
        .remove("web")
        .unwrap()
}

pub(super) fn inst(n: u32, release: &str, state: InstanceState, in_split: bool) -> Instance {
    Instance {
        id: format!("web-{n}"),
        app: "web".into(),
        release: release.into(),
        host: crate::model::LOCAL_HOST.into(),
        port: 10_000 + n as u16,
        pid: Some(100 + n),
        proc_start: Some(1),
        state,
        in_split,
        started_at: n as i64,
        restarts: 0,
        restart_at: None,
        retire_at: None,
    }
}

pub(super) fn deployment(
    from: Option<&str>,
    to: &str,
    strategy: Strategy,
    phase: Phase,
) -> Deployment {
    Deployment {
        id: 1,
        app: "web".into(),
        from: from.map(String::from),
        to: to.into(),
        strategy,
        phase,
        step: 0,
        reason: None,
        trigger: "test".into(),
        created_at: 0,
        updated_at: 0,
        finished_at: None,
        exposed: false,
        deadline: Some(NOW + 60_000),
        weight: 0,
        pause_until: None,
        intents: Default::default(),
        migration: Default::default(),
        hold: Default::default(),
    }
}

fn run(
    app: &AppConfig,
    current: Option<&str>,
    d: Option<&Deployment>,
    instances: &[Instance],
    now: Millis,
) -> Plan {
    let hosts = [PlanHost::up(crate::model::LOCAL_HOST)];
    plan(PlanInput {
        app,
        current,
        deployment: d,
        instances,
        now,
        verdict: None,
        hosts: &hosts,
    })
}

pub(super) fn starts(p: &Plan) -> usize {
    p.actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count()
}

pub(super) fn drains(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Drain { instance } => Some(instance.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn admits(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Admit { instance } => Some(instance.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn old_set() -> Vec<Instance> {
    (1..=3).map(|n| inst(n, "1.0.0", Healthy, true)).collect()
}

#[test]
fn a_first_deployment_starts_every_instance_and_sets_a_deadline() {
    let app = app("rolling");
    let mut d = deployment(None, "1.0.0", Strategy::Rolling, Phase::Pending);
    d.deadline = None;
    let p = run(&app, None, Some(&d), &[], NOW);
    assert_eq!(starts(&p), 3);
    let d = p.deployment.unwrap();
    assert_eq!(d.phase, Phase::Progressing);
    assert_eq!(d.deadline, Some(NOW + 60_000));
    assert_eq!(p.events[0].0, EventKind::DeploymentStarted);
}

#[test]
fn rolling_surges_one_and_drains_an_old_one_only_when_the_new_one_is_healthy() {
    let app = app("rolling");
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::Rolling,
        Phase::Progressing,
    );
    // Step 0: one surge instance is started, nothing drained.
    let p = run(&app, Some("1.0.0"), Some(&d), &old_set(), NOW);
    assert_eq!((starts(&p), drains(&p).len()), (1, 0));

    // The new one still starting: nothing else moves (max_surge 1, max_unavailable 0).
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Starting, false));
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert!(p.actions.is_empty(), "{:?}", p.actions);

    // Healthy: admitted and one old drained in the same plan; progress resets the deadline.
    set[3].state = Healthy;
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW + 5);
    assert_eq!(admits(&p), vec!["web-4"]);
    assert_eq!(drains(&p), vec!["web-1"]);
    assert_eq!(starts(&p), 0);
    let d2 = p.deployment.unwrap();
    assert_eq!(
        (d2.step, d2.exposed, d2.deadline),
        (1, true, Some(NOW + 5 + 60_000))
    );
}

#[test]
fn rolling_finishes_when_only_new_instances_serve() {
    let app = app("rolling");
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::Rolling,
        Phase::Progressing,
    );
    let set = vec![
        inst(3, "1.0.0", Healthy, true),
        inst(4, "1.1.0", Healthy, true),
        inst(5, "1.1.0", Healthy, true),
        inst(6, "1.1.0", Healthy, false),
    ];
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(admits(&p), vec!["web-6"]);
    assert_eq!(drains(&p), vec!["web-3"]);
    let d = p.deployment.unwrap();
    assert_eq!(d.phase, Phase::Succeeded);
    assert!(p.actions.contains(&Action::SetCurrent {
        release: Some("1.1.0".into())
    }));
}

#[test]
fn max_unavailable_drains_first_and_never_below_the_floor() {
    let mut app = app("rolling");
    app.rolling.max_surge = 0;
    app.rolling.max_unavailable = 1;
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::Rolling,
        Phase::Progressing,
    );
    let p = run(&app, Some("1.0.0"), Some(&d), &old_set(), NOW);
    assert_eq!((starts(&p), drains(&p).len()), (0, 1));
    // With one old instance already unhealthy, no healthy one may go.
    let mut set = old_set();
    set[0].state = Unhealthy;
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(drains(&p), vec!["web-1"], "only the unhealthy one goes");
}

#[test]
fn a_release_that_never_gets_healthy_fails_and_users_stay() {
    let app = app("rolling");
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::Rolling,
        Phase::Progressing,
    );
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Unhealthy, false));
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW + 59_999);
    assert!(p.deployment.is_none() && p.actions.is_empty());
    assert_eq!(p.wake_at, Some(NOW + 60_000));

    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW + 60_000);
    assert_eq!(drains(&p), vec!["web-4"]);
    let d = p.deployment.unwrap();
    assert_eq!(
        d.phase,
        Phase::Failed,
        "never exposed, so failed rather than rolled back"
    );
    assert!(
        d.reason
            .unwrap()
            .contains("did not become healthy within 1m")
    );
    assert!(p.actions.contains(&Action::SetCurrent {
        release: Some("1.0.0".into())
    }));
}

#[test]
fn going_back_after_exposure_restores_capacity_then_ends_rolled_back() {
    let app = app("rolling");
    let mut d = deployment(Some("1.0.0"), "1.1.0", Strategy::Rolling, Phase::Aborting);
    d.exposed = true;
    let set = vec![
        inst(2, "1.0.0", Healthy, true),
        inst(3, "1.0.0", Healthy, true),
        inst(4, "1.1.0", Healthy, true),
        inst(5, "1.1.0", Starting, false),
    ];
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(starts(&p), 1, "one 1.0.0 instance comes back");
    assert_eq!(
        drains(&p),
        vec!["web-5"],
        "the non-serving new one goes at once"
    );
    assert!(p.deployment.is_none(), "not done while 1.1.0 still serves");

    let set = vec![
        inst(2, "1.0.0", Healthy, true),
        inst(3, "1.0.0", Healthy, true),
        inst(6, "1.0.0", Healthy, false),
        inst(4, "1.1.0", Healthy, true),
    ];
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(admits(&p), vec!["web-6"]);
    assert_eq!(drains(&p), vec!["web-4"]);
    assert_eq!(p.deployment.unwrap().phase, Phase::RolledBack);
}

#[test]
fn blue_green_waits_for_the_whole_set_then_switches_in_one_plan() {
    let app = app("blue-green");
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::BlueGreen,
        Phase::Progressing,
    );
    let p = run(&app, Some("1.0.0"), Some(&d), &old_set(), NOW);
    assert_eq!(starts(&p), 3);

    let mut set = old_set();
    set.extend([
        inst(4, "1.1.0", Healthy, false),
        inst(5, "1.1.0", Healthy, false),
        inst(6, "1.1.0", Starting, false),
    ]);
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert!(
        p.actions.is_empty(),
        "no switch before every new instance is healthy: {:?}",
        p.actions
    );

    set[5].state = Healthy;
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(admits(&p), vec!["web-4", "web-5", "web-6"]);
    let warm: Vec<_> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::KeepWarm { until, .. } if *until == NOW + 300_000))
        .collect();
    assert_eq!(warm.len(), 3);
    assert!(drains(&p).is_empty(), "the old set stays warm");
    assert_eq!(p.deployment.unwrap().phase, Phase::Succeeded);
}

#[test]
fn blue_green_rollback_within_keep_previous_reuses_the_warm_set_at_once() {
    let app = app("blue-green");
    let d = deployment(Some("1.1.0"), "1.0.0", Strategy::BlueGreen, Phase::Pending);
    let mut set: Vec<Instance> = old_set();
    for i in &mut set {
        i.in_split = false;
        i.retire_at = Some(NOW + 1000);
    }
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, true)));
    let p = run(&app, Some("1.1.0"), Some(&d), &set, NOW);
    assert_eq!(starts(&p), 0);
    assert_eq!(admits(&p), vec!["web-1", "web-2", "web-3"]);
    assert_eq!(
        p.deployment.unwrap().phase,
        Phase::Succeeded,
        "switched back in the first plan"
    );
}

#[test]
fn warm_instances_are_drained_when_their_time_is_up() {
    let app = app("blue-green");
    let mut set: Vec<Instance> = (4..=6).map(|n| inst(n, "1.1.0", Healthy, true)).collect();
    let mut warm = inst(1, "1.0.0", Healthy, false);
    warm.retire_at = Some(NOW + 10);
    set.push(warm);
    let p = run(&app, Some("1.1.0"), None, &set, NOW);
    assert!(drains(&p).is_empty());
    assert_eq!(p.wake_at, Some(NOW + 10));
    let p = run(&app, Some("1.1.0"), None, &set, NOW + 10);
    assert_eq!(drains(&p), vec!["web-1"]);
}

#[test]
fn idle_upkeep_replaces_missing_instances_and_admits_healthy_ones() {
    let app = app("rolling");
    let set = vec![
        inst(1, "1.0.0", Healthy, true),
        inst(2, "1.0.0", Healthy, false),
    ];
    let p = run(&app, Some("1.0.0"), None, &set, NOW);
    assert_eq!(starts(&p), 1);
    assert_eq!(admits(&p), vec!["web-2"]);
    assert!(drains(&p).is_empty());
}

#[test]
fn a_failed_first_deployment_stops_its_instances() {
    let app = app("rolling");
    let d = deployment(None, "1.0.0", Strategy::Rolling, Phase::Progressing);
    let set: Vec<Instance> = (1..=3)
        .map(|n| inst(n, "1.0.0", Unhealthy, false))
        .collect();
    let p = run(&app, None, Some(&d), &set, NOW + 60_000);
    assert_eq!(drains(&p).len(), 3);
    assert_eq!(p.deployment.unwrap().phase, Phase::Failed);
}

#[test]
fn a_pause_stops_the_progress_clock_and_resume_gives_a_fresh_deadline() {
    for strategy in [Strategy::Rolling, Strategy::BlueGreen, Strategy::Canary] {
        let app = app(&strategy.to_string());
        let mut d = deployment(Some("1.0.0"), "1.1.0", strategy, Phase::Progressing);
        d.step = 1;
        d.intents.pause = true;
        let mut set = old_set();
        set.push(inst(4, "1.1.0", Starting, false));
        let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
        let paused = p.deployment.unwrap();
        assert_eq!(paused.phase, Phase::Paused, "{strategy}");

        // Long past the deadline: a paused deployment does not move, nor fail.
        let p = run(&app, Some("1.0.0"), Some(&paused), &set, NOW + 600_000);
        assert!(p.deployment.is_none() && p.actions.is_empty(), "{strategy}");

        let mut resumed = paused;
        resumed.intents.pause = false;
        let p = run(&app, Some("1.0.0"), Some(&resumed), &set, NOW + 600_000);
        let d = p.deployment.unwrap();
        assert_eq!(
            (d.phase, d.deadline),
            (Phase::Progressing, Some(NOW + 600_000 + 60_000)),
            "{strategy}: the step gets a whole deadline again"
        );
        assert_eq!(p.wake_at, Some(NOW + 660_000), "{strategy}");
    }
}

#[test]
fn draining_instances_are_no_capacity_and_are_not_drained_again() {
    let app = app("rolling");
    let mut set = old_set();
    set[0].state = Draining;
    set[0].in_split = false;
    let p = run(&app, Some("1.0.0"), None, &set, NOW);
    assert_eq!(starts(&p), 1, "the draining one is replaced");
    assert!(drains(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn going_back_reuses_warm_instances_of_the_previous_release_even_past_their_time() {
    let app = app("rolling");
    let mut d = deployment(Some("1.0.0"), "1.1.0", Strategy::Rolling, Phase::Aborting);
    d.exposed = true;
    let mut set: Vec<Instance> = old_set();
    for i in &mut set {
        i.in_split = false;
        i.retire_at = Some(NOW - 1);
    }
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, true)));
    let p = run(&app, Some("1.0.0"), Some(&d), &set, NOW);
    assert_eq!(admits(&p), vec!["web-1", "web-2", "web-3"]);
    assert_eq!(drains(&p), vec!["web-4", "web-5", "web-6"]);
    assert_eq!(starts(&p), 0);
    assert_eq!(p.deployment.unwrap().phase, Phase::RolledBack);
}
