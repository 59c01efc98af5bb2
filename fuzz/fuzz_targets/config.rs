//! Fuzzes `baton.toml` from text to a validated config, the path `baton up` takes
//! (`Config::parse`, as `crates/baton-server/src/daemon.rs` calls it), without files or sockets.
//! Beyond "never panics", a config that validates must be one Baton can run: its durations
//! convert to deadlines without wrapping, the planner starts a deployment with a deadline in
//! the future, its listeners can all be bound together, and it survives a round trip through
//! TOML.

#![no_main]

use std::path::Path;

use baton_core::Duration;
use baton_core::config::{self, Config, Pause};
use baton_core::model::{Deployment, Phase};
use baton_core::plan::{PlanInput, plan};
use libfuzzer_sys::fuzz_target;

/// A `now` far in the future (year 2300): deadlines must still fit after it.
const LATE: i64 = 10_413_792_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text, Path::new("baton.toml")) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
            assert!(e.line <= text.lines().count() + 1, "{e}");
            return;
        }
    };
    check_runnable(&config);
    // What validates serialises, and what it serialises to validates again.
    if let Ok(again) = toml::to_string(&config) {
        if let Err(e) = Config::parse(&again, Path::new("again.toml")) {
            panic!("a valid config re-serialised is refused: {e}\n{again}");
        }
    }
});

fn check_runnable(config: &Config) {
    let mut listeners = vec![config.api.listen];
    for unit in config.units() {
        let app = &unit.config;
        let mut durations = vec![
            app.health.interval,
            app.health.timeout,
            app.health.deadline,
            app.drain.timeout,
            app.drain.stop_timeout,
            app.blue_green.keep_previous,
            app.proxy.request_timeout,
            app.analysis.interval,
            app.analysis.warmup,
            config.promotion.soak,
        ];
        durations.extend(app.analysis.max_p99);
        durations.extend(app.migrate.as_ref().map(|m| m.timeout));
        durations.extend(app.canary.steps.iter().filter_map(|s| match s.pause {
            Some(Pause::For(d)) => Some(d),
            _ => None,
        }));
        for d in durations {
            assert!(d <= Duration::MAX, "{d}");
            let ms = i64::try_from(d.as_millis()).expect("fits i64");
            assert_eq!(ms, d.as_millis_i64());
            assert!(LATE.checked_add(ms).is_some(), "{d}");
            assert!(d.as_millis().checked_mul(1000).is_some(), "{d}");
        }
        for (k, v) in &app.env {
            assert!(!k.contains('\0') && !v.contains('\0'), "{k:?}={v:?}");
        }
        assert!(app.command.iter().all(|w| !w.contains('\0')));
        assert!(!app.health.path.contains(['\r', '\n', '\0', ' ']));
        assert!(app.instances >= 1 && app.instances <= 256);

        let deployment = pending(&unit.app);
        let out = plan(PlanInput {
            app,
            current: None,
            deployment: Some(&deployment),
            instances: &[],
            now: LATE,
            verdict: None,
        });
        let started = out.deployment.expect("a pending deployment starts");
        let deadline = started.deadline.expect("with a deadline");
        assert!(deadline > LATE, "deadline {deadline} not after now");
        assert_eq!(deadline - LATE, app.health.deadline.as_millis_i64());

        listeners.push(app.listen.expect("units have a listen address"));
    }
    for (i, a) in listeners.iter().enumerate() {
        for b in &listeners[..i] {
            assert!(!config::clash(*a, *b), "{a} and {b} both validated");
        }
    }
}

fn pending(app: &str) -> Deployment {
    Deployment {
        id: 1,
        app: app.into(),
        from: None,
        to: "1.0.0".into(),
        strategy: Default::default(),
        phase: Phase::Pending,
        step: 0,
        reason: None,
        trigger: "fuzz".into(),
        created_at: 0,
        updated_at: 0,
        finished_at: None,
        exposed: false,
        deadline: None,
        weight: 0,
        pause_until: None,
        intents: Default::default(),
        migration: Default::default(),
    }
}
