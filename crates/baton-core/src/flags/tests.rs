//! Table tests of flag evaluation: reasons, errors, stickiness, monotone rollout, rules.

use super::*;
use serde_json::json;

fn spec(percent: f64) -> FlagSpec {
    FlagSpec {
        enabled: true,
        percent,
        rules: Vec::new(),
    }
}

fn eval(spec: &FlagSpec, ctx: serde_json::Value) -> Result<Evaluation, EvalError> {
    let ctx = JsonContext::new(Some(&ctx))?;
    evaluate("new-checkout", spec, None, &ctx)
}

#[test]
fn reasons_follow_the_definition() {
    let user = json!({"targetingKey": "user-1"});
    let e = eval(&spec(100.0), json!({})).unwrap();
    assert_eq!(
        (e.value, e.reason, e.variant()),
        (true, Reason::Static, "on")
    );
    let e = eval(&spec(0.0), json!({})).unwrap();
    assert_eq!(
        (e.value, e.reason, e.variant()),
        (false, Reason::Static, "off")
    );
    let off = FlagSpec {
        enabled: false,
        ..spec(100.0)
    };
    assert_eq!(eval(&off, user.clone()).unwrap().reason, Reason::Disabled);
    assert_eq!(eval(&spec(50.0), user).unwrap().reason, Reason::Split);
}

#[test]
fn a_percentage_needs_a_string_targeting_key() {
    let e = eval(&spec(10.0), json!({"plan": "pro"})).unwrap_err();
    assert_eq!(e.code(), "TARGETING_KEY_MISSING");
    let e = eval(&spec(10.0), json!({"targetingKey": 7})).unwrap_err();
    assert_eq!(e.code(), "INVALID_CONTEXT");
    assert!(JsonContext::new(Some(&json!([1]))).is_err());
    assert!(JsonContext::new(None).is_ok());
}

#[test]
fn rollout_is_sticky_monotone_and_about_the_percentage() {
    let steps = [0.0, 1.0, 10.0, 20.0, 50.0, 99.0, 100.0];
    let mut before = vec![false; 1000];
    for p in steps {
        let mut on = 0;
        for (i, was) in before.iter_mut().enumerate() {
            let ctx = json!({"targetingKey": format!("user-{i}")});
            let now = eval(&spec(p), ctx.clone()).unwrap().value;
            assert_eq!(
                now,
                eval(&spec(p), ctx).unwrap().value,
                "same key, same answer"
            );
            assert!(now || !*was, "user-{i} left the rollout at {p}%");
            *was = now;
            on += usize::from(now);
        }
        let want = p * 10.0;
        assert!((on as f64 - want).abs() <= 50.0, "{on} of 1000 at {p}%");
    }
}

#[test]
fn rules_target_by_equals_list_and_prefix() {
    let mut s = spec(0.0);
    s.rules = vec![
        parse_rule("plan=pro").unwrap(),
        parse_rule("country=DE,FR").unwrap(),
        parse_rule("email^=qa-").unwrap(),
        parse_rule("header:x-beta=1").unwrap(),
    ];
    for ctx in [
        json!({"plan": "pro"}),
        json!({"country": "FR"}),
        json!({"email": "qa-7@example.com"}),
        json!({"header:x-beta": 1}),
    ] {
        let e = eval(&s, ctx.clone()).unwrap();
        assert_eq!((e.value, e.reason), (true, Reason::TargetingMatch), "{ctx}");
    }
    for ctx in [
        json!({"plan": "free"}),
        json!({"country": "US"}),
        json!({"email": "a-qa-7"}),
        json!({"plan": ["pro"]}),
        json!({}),
    ] {
        let e = eval(&s, ctx.clone()).unwrap();
        assert_eq!((e.value, e.reason), (false, Reason::Default), "{ctx}");
    }
}

#[test]
fn a_breaker_forces_the_flag_off_with_its_reason() {
    let ctx = json!({"targetingKey": "u"});
    let ctx = JsonContext::new(Some(&ctx)).unwrap();
    let e = evaluate("f", &spec(100.0), Some("breaker checkout"), &ctx).unwrap();
    assert_eq!((e.value, e.reason), (false, Reason::Disabled));
    assert_eq!(e.forced_off.as_deref(), Some("breaker checkout"));
}

#[test]
fn bad_definitions_and_rules_say_what_to_write() {
    assert!(spec(101.0).check().unwrap_err().1.contains("0 to 100"));
    assert!(spec(f64::NAN).check().is_err());
    assert!(parse_rule("plan").unwrap_err().contains("ATTR=VALUE"));
    assert!(parse_rule("=x").unwrap_err().contains("attribute"));
    assert!(valid_flag_name("new-checkout") && !valid_flag_name("a b") && !valid_flag_name(""));
    assert_eq!(spec(10.0).summary(), "10%");
    assert_eq!(
        FlagSpec {
            enabled: false,
            ..spec(1.0)
        }
        .summary(),
        "off"
    );
}
