//! Table tests of the canary planner: steps, pauses, verdicts, intents.

use super::tests::{NOW, admits, app, deployment, drains, inst, old_set, starts};
use super::*;
use crate::config::{CanaryStep, Pause};
use crate::model::InstanceState::*;
use crate::model::Promote;

fn run(
    app: &AppConfig,
    d: &Deployment,
    set: &[Instance],
    now: Millis,
    verdict: Option<&Judgement>,
) -> Plan {
    let hosts = [PlanHost::up(crate::model::LOCAL_HOST)];
    plan(PlanInput {
        app,
        current: Some("1.0.0"),
        deployment: Some(d),
        instances: set,
        now,
        verdict,
        hosts: &hosts,
    })
}

fn canary(phase: Phase) -> Deployment {
    deployment(Some("1.0.0"), "1.1.0", Strategy::Canary, phase)
}

/// A canary holding at `step` with `weight` (served, so exposed) until `until`: its instances
/// are ready, so no progress deadline runs.
fn holding(step: u32, weight: u32, until: Option<Millis>) -> Deployment {
    let mut d = canary(Phase::Progressing);
    (d.step, d.weight, d.pause_until, d.deadline) = (step, weight, until, None);
    d.exposed = true;
    d
}

/// The stable set plus one healthy canary instance in the split.
fn with_canary() -> Vec<Instance> {
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Healthy, true));
    set
}

#[test]
fn step_one_starts_one_canary_instance_and_gives_it_no_traffic_before_it_is_healthy() {
    let app = app("canary");
    let p = run(&app, &canary(Phase::Pending), &old_set(), NOW, None);
    assert_eq!(starts(&p), 1, "5 % of 3 instances is one canary instance");
    assert!(drains(&p).is_empty(), "the stable set stays at full size");
    let d = p.deployment.unwrap();
    assert_eq!((d.phase, d.step, d.weight), (Phase::Progressing, 1, 0));
}

#[test]
fn a_healthy_canary_gets_its_weight_then_holds_for_the_pause() {
    let app = app("canary");
    let mut d = canary(Phase::Progressing);
    d.step = 1;
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Healthy, false));
    let p = run(&app, &d, &set, NOW, None);
    assert_eq!(admits(&p), vec!["web-4"]);
    assert_eq!(p.wake_at, Some(NOW + 30_000));
    let d = p.deployment.unwrap();
    assert_eq!(
        (d.weight, d.pause_until, d.exposed),
        (5, Some(NOW + 30_000), true)
    );
    // During the pause even a passing verdict waits.
    let p = run(
        &app,
        &d,
        &with_canary(),
        NOW + 29_999,
        Some(&Judgement::Pass),
    );
    assert!(p.deployment.is_none() && p.actions.is_empty());
}

#[test]
fn a_pass_at_the_end_of_the_pause_goes_to_the_next_step() {
    let app = app("canary");
    let d = holding(1, 5, Some(NOW));
    let p = run(&app, &d, &with_canary(), NOW, Some(&Judgement::Pass));
    let d = p.deployment.unwrap();
    assert_eq!(
        (d.step, d.weight),
        (2, 5),
        "the next step's weight is set once its instances are ready"
    );
    let p = run(&app, &d, &with_canary(), NOW + 1, None);
    let d = p.deployment.unwrap();
    assert_eq!(d.weight, 25, "one instance already covers 25 % of 3");
}

#[test]
fn an_inconclusive_step_holds_or_fails_as_configured() {
    let mut app = app("canary");
    let d = holding(1, 5, Some(NOW));
    let inconclusive = Judgement::Inconclusive("12 of 50 requests".into());
    let p = run(&app, &d, &with_canary(), NOW, Some(&inconclusive));
    assert!(p.deployment.is_none(), "hold: nothing changes");
    app.analysis.on_inconclusive = crate::config::OnInconclusive::Fail;
    let p = run(&app, &d, &with_canary(), NOW, Some(&inconclusive));
    assert_eq!(p.deployment.unwrap().phase, Phase::RolledBack);
}

#[test]
fn a_failing_verdict_goes_back_at_once_in_one_plan() {
    let app = app("canary");
    let d = holding(1, 5, Some(NOW + 20_000));
    let fail = Judgement::Fail("error rate 0.31 > 0.02 (p < 0.001)".into());
    let p = run(&app, &d, &with_canary(), NOW, Some(&fail));
    assert_eq!(drains(&p), vec!["web-4"]);
    assert_eq!(starts(&p), 0, "the stable set was never reduced");
    let d = p.deployment.unwrap();
    assert_eq!((d.phase, d.weight), (Phase::RolledBack, 0));
    assert!(d.reason.unwrap().contains("error rate 0.31"));
    assert!(p.events.iter().any(|(k, _)| *k == EventKind::VerdictFailed));
}

#[test]
fn promote_skips_the_pause_and_promote_full_jumps_to_the_last_step() {
    let app = app("canary");
    let mut d = holding(1, 5, Some(NOW + 30_000));
    d.intents.promote = Some(Promote::Step);
    let p = run(&app, &d, &with_canary(), NOW, None);
    let d2 = p.deployment.unwrap();
    assert_eq!((d2.step, d2.weight, d2.intents.promote), (2, 25, None));

    d.intents.promote = Some(Promote::Full);
    let p = run(&app, &d, &with_canary(), NOW, None);
    assert_eq!(
        starts(&p),
        2,
        "the canary grows to full size beside the stable set"
    );
    assert_eq!(p.deployment.unwrap().step, 4);
}

#[test]
fn the_last_step_switches_everything_and_lets_the_stable_set_go() {
    let app = app("canary");
    let mut d = canary(Phase::Progressing);
    (d.step, d.weight) = (4, 50);
    let mut set = old_set();
    set.extend([
        inst(4, "1.1.0", Healthy, true),
        inst(5, "1.1.0", Healthy, true),
        inst(6, "1.1.0", Healthy, false),
    ]);
    let p = run(&app, &d, &set, NOW, None);
    assert_eq!(admits(&p), vec!["web-6"]);
    let warm = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::KeepWarm { until, .. } if *until == NOW))
        .count();
    assert_eq!(
        warm, 3,
        "the stable set leaves the split and is drained right after"
    );
    let d = p.deployment.unwrap();
    assert_eq!((d.phase, d.weight), (Phase::Succeeded, 100));
}

#[test]
fn pause_holds_resume_goes_on_abort_goes_back() {
    let app = app("canary");
    let mut d = holding(1, 5, Some(NOW));
    d.intents.pause = true;
    let p = run(&app, &d, &with_canary(), NOW, Some(&Judgement::Pass));
    let paused = p.deployment.unwrap();
    assert_eq!((paused.phase, paused.step), (Phase::Paused, 1));
    let p = run(
        &app,
        &paused,
        &with_canary(),
        NOW + 60_000,
        Some(&Judgement::Pass),
    );
    assert!(p.deployment.is_none(), "paused: nothing moves");

    let mut resumed = paused.clone();
    resumed.intents.pause = false;
    let p = run(
        &app,
        &resumed,
        &with_canary(),
        NOW + 60_000,
        Some(&Judgement::Pass),
    );
    let d2 = p.deployment.unwrap();
    assert_eq!((d2.phase, d2.step), (Phase::Progressing, 2));

    let mut aborted = paused;
    aborted.intents.abort = true;
    aborted.exposed = true;
    let p = run(&app, &aborted, &with_canary(), NOW, None);
    assert_eq!(drains(&p), vec!["web-4"]);
    let d3 = p.deployment.unwrap();
    assert_eq!(d3.phase, Phase::RolledBack);
    assert_eq!(d3.reason.as_deref(), Some("aborted by the operator"));
}

#[test]
fn canary_sizing_follows_the_weight() {
    assert_eq!(instances_for(3, 5), 1);
    assert_eq!(instances_for(3, 50), 2);
    assert_eq!(instances_for(10, 25), 3);
    assert_eq!(instances_for(4, 100), 4);
}

#[test]
fn the_expand_migration_runs_before_any_new_instance_and_its_failure_goes_back() {
    use crate::config::MigrateConfig;
    use crate::model::MigrationState;
    let mut app = app("rolling");
    app.migrate = Some(MigrateConfig {
        command: vec!["m".into()],
        after: Some(vec!["c".into()]),
        timeout: crate::Duration::from_secs(60),
        contract_delay: crate::Duration::from_secs(60),
    });
    let mut d = deployment(Some("1.0.0"), "1.1.0", Strategy::Rolling, Phase::Pending);
    let p = run(&app, &d, &old_set(), NOW, None);
    assert_eq!(
        p.actions,
        vec![Action::Migrate {
            release: "1.1.0".into()
        }],
        "nothing starts before the migration"
    );

    d.phase = Phase::Progressing;
    d.migration = MigrationState::Failed("exit code 3".into());
    let p = run(&app, &d, &old_set(), NOW, None);
    let d2 = p.deployment.unwrap();
    assert_eq!(d2.phase, Phase::Failed, "users never saw it");
    assert!(
        d2.reason
            .unwrap()
            .contains("the migration failed: exit code 3")
    );

    d.migration = MigrationState::Done;
    let mut set = old_set();
    set.iter_mut().for_each(|i| i.release = "1.1.0".into());
    let p = run(&app, &d, &set, NOW, None);
    assert!(
        p.actions.contains(&Action::Contract {
            release: "1.1.0".into()
        }),
        "contract only once it succeeded: {:?}",
        p.actions
    );
    assert_eq!(p.deployment.unwrap().phase, Phase::Succeeded);
}

fn step(weight: Option<u32>, pause_secs: Option<u64>) -> CanaryStep {
    CanaryStep {
        weight,
        pause: pause_secs.map(|s| Pause::For(crate::Duration::from_secs(s))),
    }
}

#[test]
fn a_step_without_a_weight_or_repeating_the_previous_one_holds_for_its_pause() {
    for second in [step(None, Some(30)), step(Some(5), Some(30))] {
        let mut app = app("canary");
        app.canary.steps = vec![step(Some(5), Some(30)), second, step(Some(100), None)];
        let d = holding(1, 5, Some(NOW));
        let p = run(&app, &d, &with_canary(), NOW, Some(&Judgement::Pass));
        let d = p.deployment.unwrap();
        assert_eq!((d.step, d.deadline), (2, Some(NOW + 60_000)));

        // Its instances are ready at once (same weight): the hold starts, the deadline goes.
        let p = run(&app, &d, &with_canary(), NOW + 1, None);
        let d = p.deployment.expect("step 2 starts its hold");
        assert_eq!(
            (d.step, d.weight, d.pause_until, d.deadline),
            (2, 5, Some(NOW + 1 + 30_000), None)
        );
        assert!(p.events.iter().any(|(k, m)| *k == EventKind::DeploymentStep
            && m.contains("step 2/3")
            && m.contains("holding for 30s")));

        // Past the old progress deadline: a passing step goes on, nothing rolls back.
        let p = run(
            &app,
            &d,
            &with_canary(),
            NOW + 60_001,
            Some(&Judgement::Pass),
        );
        let d = p.deployment.unwrap();
        assert_eq!((d.phase, d.step), (Phase::Progressing, 3));
    }
}

#[test]
fn a_first_step_without_a_weight_runs_the_canary_dark_and_an_abort_ends_failed() {
    let mut app = app("canary");
    app.canary.steps = vec![step(None, Some(30)), step(Some(100), None)];
    let p = run(&app, &canary(Phase::Pending), &old_set(), NOW, None);
    assert_eq!(starts(&p), 1, "one canary instance, with no traffic");
    let d = p.deployment.unwrap();

    let mut set = old_set();
    set.push(inst(4, "1.1.0", Healthy, false));
    let p = run(&app, &d, &set, NOW + 1, None);
    let d = p.deployment.unwrap();
    assert_eq!(
        (d.weight, d.pause_until, d.deadline, d.exposed),
        (0, Some(NOW + 1 + 30_000), None, false)
    );

    let mut aborted = d;
    aborted.intents.abort = true;
    let p = run(&app, &aborted, &with_canary(), NOW + 2, None);
    assert_eq!(
        p.deployment.unwrap().phase,
        Phase::Failed,
        "no user was served by it"
    );
}

#[test]
fn promote_starts_the_next_step_with_a_progress_deadline() {
    let app = app("canary");
    let mut d = holding(1, 5, Some(NOW + 30_000));
    d.intents.promote = Some(Promote::Full);
    let p = run(&app, &d, &with_canary(), NOW, None);
    let d = p.deployment.unwrap();
    assert_eq!((d.step, d.deadline), (4, Some(NOW + 60_000)));
    // The full-size canary never gets healthy: the deadline sends it back.
    let mut set = with_canary();
    set.extend([
        inst(5, "1.1.0", Unhealthy, false),
        inst(6, "1.1.0", Unhealthy, false),
    ]);
    let p = run(&app, &d, &set, NOW + 60_000, None);
    let d = p.deployment.unwrap();
    assert_eq!(d.phase, Phase::RolledBack);
    assert!(
        d.reason
            .unwrap()
            .contains("did not become healthy within 1m at step 4")
    );
}

#[test]
fn the_weight_in_force_is_the_last_one_set_and_stays_past_the_last_step() {
    let mut app = app("canary");
    app.canary.steps = vec![
        step(Some(10), Some(30)),
        step(None, Some(30)),
        step(Some(100), None),
    ];
    let weights: Vec<u32> = (0..5).map(|i| weight_at(&app, i)).collect();
    assert_eq!(weights, vec![10, 10, 100, 100, 100]);
    app.canary.steps[0].weight = None;
    assert_eq!(weight_at(&app, 0), 0, "no weight yet: the canary runs dark");
}

#[test]
fn promote_at_the_last_step_is_cleared_and_changes_nothing_else() {
    let app = app("canary");
    for promote in [Promote::Step, Promote::Full] {
        let mut d = canary(Phase::Progressing);
        (d.step, d.weight) = (4, 50);
        d.intents.promote = Some(promote);
        let set = old_set();
        let p = run(&app, &d, &set, NOW, None);
        assert_eq!(
            starts(&p),
            3,
            "{promote:?}: the last step brings the canary to size"
        );
        assert!(p.events.is_empty(), "{promote:?}: {:?}", p.events);
        let d = p.deployment.unwrap();
        assert_eq!((d.step, d.intents.promote), (4, None), "{promote:?}");
    }
}

#[test]
fn on_inconclusive_fail_says_why_and_pass_goes_on() {
    let mut app = app("canary");
    app.analysis.on_inconclusive = crate::config::OnInconclusive::Fail;
    let d = holding(2, 25, Some(NOW));
    let inconclusive = Judgement::Inconclusive("12 of 50 requests".into());
    let p = run(&app, &d, &with_canary(), NOW, Some(&inconclusive));
    let reason = p.deployment.unwrap().reason.unwrap();
    assert!(
        reason.starts_with(
            "step 2 ended without a verdict (12 of 50 requests) and on_inconclusive = \"fail\""
        ),
        "{reason}"
    );
    let p = run(&app, &d, &with_canary(), NOW, None);
    let reason = p.deployment.unwrap().reason.unwrap();
    assert!(reason.contains("(no verdict yet)"), "{reason}");

    app.analysis.on_inconclusive = crate::config::OnInconclusive::Pass;
    let p = run(&app, &d, &with_canary(), NOW, Some(&inconclusive));
    let d = p.deployment.unwrap();
    assert_eq!((d.phase, d.step), (Phase::Progressing, 3));
}

#[test]
fn a_canary_that_never_gets_healthy_goes_back_at_its_deadline() {
    let app = app("canary");
    let mut d = canary(Phase::Progressing);
    d.step = 1;
    let mut set = old_set();
    set.push(inst(4, "1.1.0", Unhealthy, false));
    let p = run(&app, &d, &set, NOW + 59_999, None);
    assert!(p.deployment.is_none() && p.actions.is_empty());
    assert_eq!(p.wake_at, Some(NOW + 60_000));
    let p = run(&app, &d, &set, NOW + 60_000, None);
    assert_eq!(drains(&p), vec!["web-4"]);
    let d = p.deployment.unwrap();
    assert_eq!(d.phase, Phase::Failed, "it never had a weight");
    let reason = d.reason.unwrap();
    assert!(
        reason.starts_with(
            "1.1.0 did not become healthy within 1m at step 1 (0 instances healthy); users stay on 1.0.0"
        ),
        "{reason}"
    );
}
