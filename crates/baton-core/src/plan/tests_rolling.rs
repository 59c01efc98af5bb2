//! Table tests of the rolling algorithm's bounds (docs/DESIGN.md I3): surge, availability floor,
//! warm instances, a lowered instance count.

use super::tests::{NOW, admits, app, deployment, drains, inst, old_set, starts};
use super::*;
use crate::model::InstanceState::*;

fn rolling_to(to: &str, from: &str) -> Deployment {
    deployment(Some(from), to, Strategy::Rolling, Phase::Progressing)
}

fn run(app: &AppConfig, current: &str, d: &Deployment, set: &[Instance]) -> Plan {
    let hosts = [PlanHost::up(crate::model::LOCAL_HOST)];
    plan(PlanInput {
        app,
        current: Some(current),
        deployment: Some(d),
        instances: set,
        now: NOW,
        verdict: None,
        hosts: &hosts,
    })
}

fn warm(mut i: Instance) -> Instance {
    i.in_split = false;
    i.retire_at = Some(NOW + 1000);
    i
}

#[test]
fn rolling_onto_warm_instances_of_the_target_switches_them_in_at_once() {
    let app = app("rolling");
    let d = rolling_to("1.0.0", "1.1.0");
    let mut set: Vec<Instance> = old_set().into_iter().map(warm).collect();
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, true)));
    let p = run(&app, "1.1.0", &d, &set);
    let reused: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Reuse { instance } => Some(instance.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reused, vec!["web-1", "web-2", "web-3"]);
    assert_eq!(admits(&p), vec!["web-1", "web-2", "web-3"]);
    assert_eq!(drains(&p), vec!["web-4", "web-5", "web-6"]);
    assert_eq!(starts(&p), 0, "they already run: nothing new starts");
    assert_eq!(p.deployment.unwrap().phase, Phase::Succeeded);
}

#[test]
fn a_deploy_reuses_warm_instances_of_its_release_even_past_their_time() {
    let app = app("rolling");
    let d = rolling_to("1.0.0", "1.1.0");
    let mut set: Vec<Instance> = old_set().into_iter().map(warm).collect();
    for i in &mut set {
        i.retire_at = Some(NOW - 1);
    }
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, true)));
    let p = run(&app, "1.1.0", &d, &set);
    assert_eq!(admits(&p), vec!["web-1", "web-2", "web-3"]);
    assert_eq!(drains(&p), vec!["web-4", "web-5", "web-6"]);
}

#[test]
fn warm_instances_of_another_release_are_outside_the_surge_count() {
    let app = app("rolling");
    let d = rolling_to("1.2.0", "1.1.0");
    let mut set: Vec<Instance> = old_set().into_iter().map(warm).collect();
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, true)));
    let p = run(&app, "1.1.0", &d, &set);
    assert_eq!(
        starts(&p),
        1,
        "3 serving + 1 surge; the warm set is not counted"
    );
    assert!(drains(&p).is_empty(), "the warm set leaves at its own time");
    assert_eq!(p.wake_at, Some(NOW + 1000));
}

#[test]
fn the_floor_counts_serving_instances_and_allows_exactly_down_to_it() {
    let app = app("rolling");
    let d = rolling_to("1.1.0", "1.0.0");
    // One old instance unhealthy in the split, two healthy; one new healthy: only the
    // unhealthy one may go (1 new + 2 old serving = 3 = the floor).
    let mut set = old_set();
    set[0].state = Unhealthy;
    set.push(inst(4, "1.1.0", Healthy, true));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), vec!["web-1"]);
    assert_eq!(starts(&p), 0, "4 running = 3 + max_surge 1");
    // A second healthy new instance: one healthy old one may go as well, not two.
    set.push(inst(5, "1.1.0", Healthy, true));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), vec!["web-1", "web-2"]);
}

#[test]
fn old_instances_serving_nobody_go_first_then_the_oldest_serving_one() {
    let mut app = app("rolling");
    (app.rolling.max_surge, app.rolling.max_unavailable) = (0, 1);
    let d = rolling_to("1.1.0", "1.0.0");
    let mut set = old_set();
    (set[0].started_at, set[1].started_at, set[2].started_at) = (5, 1, 3);
    let mut idle = inst(7, "1.0.0", Healthy, false);
    idle.started_at = 9;
    set.push(idle);
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), vec!["web-7", "web-2"]);
    assert_eq!(starts(&p), 0, "4 already run, max_surge 0");
}

#[test]
fn max_surge_bounds_the_starts() {
    let mut app = app("rolling");
    app.rolling.max_surge = 2;
    let d = rolling_to("1.1.0", "1.0.0");
    let p = run(&app, "1.0.0", &d, &old_set());
    assert_eq!(starts(&p), 2);
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Starting, false));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(starts(&p), 1, "3 old + 1 new + 1 = 3 + max_surge 2");
    // Never more new instances than `instances`, however large the surge.
    app.rolling.max_surge = 5;
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(starts(&p), 2);
}

#[test]
fn a_lowered_instance_count_drops_the_least_useful_target_instances_first() {
    let mut app = app("rolling");
    app.instances = 2;
    let d = rolling_to("1.1.0", "1.0.0");
    let set = vec![
        inst(4, "1.1.0", Healthy, true),
        inst(5, "1.1.0", Starting, false),
        inst(6, "1.1.0", Healthy, false),
        inst(8, "1.1.0", Unhealthy, false),
        inst(9, "1.1.0", Healthy, true),
    ];
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), vec!["web-5", "web-8", "web-6"]);
    assert!(admits(&p).is_empty());
    assert_eq!(p.deployment.unwrap().phase, Phase::Succeeded);

    // Blue-green (and a canary's last step) too.
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::BlueGreen,
        Phase::Progressing,
    );
    let set = vec![
        inst(1, "1.0.0", Healthy, true),
        inst(2, "1.0.0", Healthy, true),
        inst(4, "1.1.0", Healthy, false),
        inst(5, "1.1.0", Starting, false),
        inst(6, "1.1.0", Healthy, false),
        inst(8, "1.1.0", Unhealthy, false),
        inst(9, "1.1.0", Starting, false),
    ];
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), vec!["web-5", "web-8", "web-9"]);
    assert_eq!(admits(&p), vec!["web-4", "web-6"]);
    assert_eq!(p.deployment.unwrap().phase, Phase::Succeeded);
}

#[test]
fn the_blue_green_switch_drains_idle_old_instances_and_leaves_warm_ones_to_their_time() {
    let app = app("blue-green");
    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::BlueGreen,
        Phase::Progressing,
    );
    let mut set = old_set();
    set[2].state = Unhealthy;
    set[2].in_split = false;
    set.push(warm(inst(7, "0.9.0", Healthy, false)));
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, false)));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(admits(&p), vec!["web-4", "web-5", "web-6"]);
    let kept: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::KeepWarm { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kept,
        vec!["web-1", "web-2"],
        "only serving ones are kept warm"
    );
    assert_eq!(
        drains(&p),
        vec!["web-3"],
        "the warm 0.9.0 one leaves at its time"
    );
}

#[test]
fn step_events_say_how_far_the_move_is() {
    let app = app("rolling");
    let d = rolling_to("1.1.0", "1.0.0");
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Healthy, false));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(
        p.events,
        vec![(
            EventKind::DeploymentStep,
            "1 of 3 instances on 1.1.0 serving".to_string()
        )]
    );

    let d = deployment(
        Some("1.0.0"),
        "1.1.0",
        Strategy::BlueGreen,
        Phase::Progressing,
    );
    let mut set = old_set();
    set.extend((4..=6).map(|n| inst(n, "1.1.0", Healthy, false)));
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(
        p.events[0],
        (
            EventKind::DeploymentStep,
            "switched 100 % to 1.1.0 (3 instances)".to_string()
        )
    );
}

#[test]
fn across_hosts_the_old_instance_drained_is_on_the_host_where_the_new_one_serves() {
    // web-1 on a and web-2 on b serve 1.0.0; the surge's 1.1.0 came up on b. Draining a's
    // (the oldest) would leave a's own listener with nothing; b's goes instead.
    let mut app = app("rolling");
    app.instances = 2;
    let d = rolling_to("1.1.0", "1.0.0");
    let mut set = vec![
        inst(1, "1.0.0", Healthy, true),
        inst(2, "1.0.0", Healthy, true),
        inst(3, "1.1.0", Healthy, false),
    ];
    set[0].host = "a".into();
    set[1].host = "b".into();
    set[2].host = "b".into();
    let p = run(&app, "1.0.0", &d, &set);
    assert_eq!(drains(&p), ["web-2"], "{:?}", p.actions);
}
