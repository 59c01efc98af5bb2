//! Table tests of the rolling algorithm's bounds (docs/DESIGN.md I3): surge, availability floor,
//! warm instances, a lowered instance count.

use super::tests::{NOW, admits, app, deployment, drains, inst, old_set, starts};
use super::*;
use crate::model::InstanceState::*;

fn rolling_to(to: &str, from: &str) -> Deployment {
    deployment(Some(from), to, Strategy::Rolling, Phase::Progressing)
}

fn run(app: &AppConfig, current: &str, d: &Deployment, set: &[Instance]) -> Plan {
    plan(PlanInput {
        app,
        current: Some(current),
        deployment: Some(d),
        instances: set,
        now: NOW,
        verdict: None,
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
