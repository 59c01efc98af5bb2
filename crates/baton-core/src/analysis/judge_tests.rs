//! The judge on fixed samples: each check's outcome, figures and detail line.

use super::criteria::{Criteria, MetricKind, MetricRule};
use super::judge::judge;
use super::verdict::{Check, Outcome, Verdict};
use super::window::{Bucket, MetricReading, Window};

/// A histogram of 10 ms buckets from `(start_ms, count)` pairs.
fn hist(buckets: &[(u64, u64)]) -> Vec<Bucket> {
    buckets
        .iter()
        .map(|&(ms, count)| Bucket {
            low_us: ms * 1_000,
            high_us: (ms + 10) * 1_000,
            count,
        })
        .collect()
}

fn window(requests: u64, errors: u64, latency: Vec<Bucket>) -> Window {
    Window {
        requests,
        errors,
        latency,
    }
}

/// The stable release of most tests: 950 requests, 1 % errors, 80-120 ms.
fn stable() -> Window {
    window(
        950,
        10,
        hist(&[(80, 200), (90, 275), (100, 275), (110, 200)]),
    )
}

fn only_errors(max: f64) -> Criteria {
    Criteria {
        max_error_rate: Some(max),
        compare: false,
        ..Criteria::default()
    }
}

fn only_p99(max_us: u64) -> Criteria {
    Criteria {
        max_p99_us: Some(max_us),
        compare: false,
        ..Criteria::default()
    }
}

fn the(v: &Verdict, name: &str) -> Check {
    v.checks
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}: {v:?}"))
}

#[test]
fn overwhelming_errors_fail_before_min_requests() {
    // Ten errors in fifteen requests against a 2 % max: no need to wait for fifty.
    let v = judge(&only_errors(0.02), &window(15, 10, vec![]), &stable(), &[]);
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.summary);
    let c = the(&v, "error_rate");
    assert_eq!((c.threshold, c.samples), (Some(0.02), 15));
    let e = c.e_value.unwrap();
    assert!(e > 1e10, "{e:e}");
    assert_eq!(c.p_value, Some(1.0 / e));
    assert!(
        c.detail
            .starts_with("error rate 66.7 % (10 of 15) > max 2.0 %: e-value "),
        "{}",
        c.detail
    );
    assert!(c.detail.ends_with(" >= 1000"), "{}", c.detail);
    assert_eq!(v.summary, format!("fail: error_rate: {}", c.detail));

    // (requests, errors, outcome) against 2 %: thirty percent fails once the evidence is
    // there, whatever min_requests says; weak evidence waits for it.
    let table = [
        (5, 3, Outcome::Inconclusive),
        (10, 3, Outcome::Inconclusive),
        (10, 4, Outcome::Fail),
        (15, 5, Outcome::Fail),
        (20, 6, Outcome::Fail),
        (25, 5, Outcome::Inconclusive),
        (50, 15, Outcome::Fail),
        (49, 2, Outcome::Inconclusive),
        (50, 2, Outcome::Inconclusive),
        (50, 1, Outcome::Pass),
        (0, 0, Outcome::Inconclusive),
    ];
    for (n, k, outcome) in table {
        let c = the(
            &judge(&only_errors(0.02), &window(n, k, vec![]), &stable(), &[]),
            "error_rate",
        );
        assert_eq!(c.outcome, outcome, "{k} of {n}: {}", c.detail);
    }
    let v = judge(&only_errors(0.05), &window(10, 3, vec![]), &stable(), &[]);
    let detail = the(&v, "error_rate").detail;
    assert!(
        detail.starts_with("10 of 50 requests; error rate 30.0 % (3 of 10), e-value "),
        "{detail}"
    );
    assert!(detail.ends_with(" (fails at 1000)"), "{detail}");
    let v = judge(&only_errors(0.05), &Window::default(), &stable(), &[]);
    assert_eq!(v.summary, "inconclusive: error_rate: 0 of 50 requests");
}

#[test]
fn an_error_rate_over_the_max_within_noise_is_inconclusive() {
    let v = judge(&only_errors(0.05), &window(50, 4, vec![]), &stable(), &[]);
    let c = the(&v, "error_rate");
    assert_eq!(c.outcome, Outcome::Inconclusive);
    assert!(c.e_value.unwrap() < 10.0, "{}", c.detail);
    assert!(c.detail.contains("within noise"), "{}", c.detail);

    let v = judge(&only_errors(0.05), &window(50, 2, vec![]), &stable(), &[]);
    assert_eq!(v.outcome, Outcome::Pass);
    let c = the(&v, "error_rate");
    assert_eq!(c.detail, "error rate 4.0 % (2 of 50) <= max 5.0 %");
    assert!(c.e_value.unwrap() <= 1.0, "{:?}", c.e_value);
    assert_eq!(c.p_value, Some(1.0));
}

#[test]
fn a_stricter_confidence_needs_more_evidence() {
    let strict = Criteria {
        confidence: 0.999_999,
        ..only_errors(0.02)
    };
    let canary = window(20, 6, vec![]);
    assert_eq!(
        judge(&only_errors(0.02), &canary, &stable(), &[]).outcome,
        Outcome::Fail
    );
    let c = the(&judge(&strict, &canary, &stable(), &[]), "error_rate");
    assert_eq!(c.outcome, Outcome::Inconclusive, "{}", c.detail);
    assert!(c.detail.ends_with("(fails at 1000000)"), "{}", c.detail);
}

#[test]
fn p99_fails_on_significant_exceedances_only() {
    // 5 of 50 at 600 ms, over a 500 ms max: 10 % where 1 % may be, p = 1.5e-4.
    let canary = window(50, 0, hist(&[(10, 45), (600, 5)]));
    let v = judge(&only_p99(500_000), &canary, &stable(), &[]);
    let c = the(&v, "p99");
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
    assert!((c.p_value.unwrap() - 1.456_89e-4).abs() < 1e-8);
    assert_eq!(c.threshold, Some(500_000.0));
    assert!(c.observed.unwrap() > 600_000.0);
    assert!(
        c.detail.contains("5 of 50 samples (10.0 %) at or above it"),
        "{}",
        c.detail
    );

    // 2 of 50: p99 is over, but that many happen one time in eleven at 1 %.
    let canary = window(50, 0, hist(&[(10, 48), (600, 2)]));
    let c = the(&judge(&only_p99(500_000), &canary, &stable(), &[]), "p99");
    assert_eq!(c.outcome, Outcome::Inconclusive, "{}", c.detail);

    // 5 of 1000 is under 1 %.
    let canary = window(1_000, 0, hist(&[(10, 995), (600, 5)]));
    let c = the(&judge(&only_p99(500_000), &canary, &stable(), &[]), "p99");
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
    assert_eq!(c.detail, "p99 19.9 ms <= max 500.0 ms (1000 samples)");
}

#[test]
fn p99_does_not_count_a_bucket_that_straddles_the_max() {
    let canary = window(
        50,
        0,
        vec![Bucket {
            low_us: 400_000,
            high_us: 600_000,
            count: 50,
        }],
    );
    let c = the(&judge(&only_p99(500_000), &canary, &stable(), &[]), "p99");
    assert_eq!(c.outcome, Outcome::Inconclusive, "{}", c.detail);
    assert!(c.detail.contains("0 of 50 samples"), "{}", c.detail);
}

#[test]
fn the_error_comparison_needs_certainty_beyond_the_minimum_difference() {
    let compare = Criteria::default();
    let same_latency = stable().latency;
    let v = judge(
        &compare,
        &window(50, 15, hist(&[(100, 50)])),
        &stable(),
        &[],
    );
    let c = the(&v, "compare.errors");
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
    assert!((c.observed.unwrap() - (0.3 - 10.0 / 950.0)).abs() < 1e-12);
    assert_eq!(c.threshold, Some(0.01));
    assert!(
        c.detail
            .starts_with("canary 30.0 % (15 of 50) vs stable 1.1 % (10 of 950): +28.95 points; at 99.9 %: canary at least "),
        "{}",
        c.detail
    );
    assert!(c.detail.ends_with("(fails above 1.00)"), "{}", c.detail);

    // The same share in fifteen requests is already beyond doubt, before min_requests.
    let early = judge(&compare, &window(15, 10, vec![]), &stable(), &[]);
    assert_eq!(the(&early, "compare.errors").outcome, Outcome::Fail);

    // 1.3 % against 1.0 % over two million requests: surely worse, but by less than a point.
    let canary = window(100_000, 1_300, same_latency.clone());
    let stable_big = window(1_900_000, 19_000, same_latency.clone());
    let c = the(
        &judge(&compare, &canary, &stable_big, &[]),
        "compare.errors",
    );
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
    // 3 % against 1 % over as many: more than a point worse, beyond doubt.
    let canary = window(100_000, 3_000, same_latency.clone());
    let c = the(
        &judge(&compare, &canary, &stable_big, &[]),
        "compare.errors",
    );
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);

    // 4 of 50 against 0.3 %: worse, but not surely by more than a point.
    let canary = window(50, 4, same_latency.clone());
    let stable_low = window(950, 3, same_latency);
    let c = the(
        &judge(&compare, &canary, &stable_low, &[]),
        "compare.errors",
    );
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
}

#[test]
fn the_latency_comparison_catches_three_times_slower() {
    let compare = Criteria::default();
    let canary = window(50, 0, hist(&[(240, 10), (270, 15), (300, 15), (330, 10)]));
    let v = judge(&compare, &canary, &stable(), &[]);
    let c = the(&v, "compare.latency");
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
    let ratio = c.observed.unwrap();
    assert!((2.8..3.2).contains(&ratio), "{ratio}");
    assert_eq!(c.threshold, Some(1.5));
    assert!(c.p_value.unwrap() < 1e-6, "{}", c.detail);
    assert!(
        c.detail
            .starts_with("canary typical 288.4 ms vs stable 99.4 ms: ratio 2.90 (min 1.50)"),
        "{}",
        c.detail
    );
    assert_eq!(the(&v, "compare.errors").outcome, Outcome::Pass);
    assert!(
        v.summary.starts_with("fail: compare.latency: "),
        "{}",
        v.summary
    );
}

#[test]
fn the_latency_comparison_passes_the_same_buckets_and_small_shifts() {
    let compare = Criteria::default();
    // The same four buckets: all ties with the stable, no evidence of anything.
    let same = window(50, 0, hist(&[(80, 10), (90, 15), (100, 15), (110, 10)]));
    let c = the(&judge(&compare, &same, &stable(), &[]), "compare.latency");
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
    assert!(c.p_value.unwrap() > 0.99);
    // 20 % slower, with plenty of data: real, but below the minimum effect.
    let slower = window(
        950,
        0,
        hist(&[(100, 200), (110, 275), (120, 275), (130, 200)]),
    );
    let c = the(&judge(&compare, &slower, &stable(), &[]), "compare.latency");
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
    // Twice as slow with that much data: over 1.5x, surely.
    let double = window(
        950,
        0,
        hist(&[(160, 200), (180, 275), (200, 275), (220, 200)]),
    );
    let c = the(&judge(&compare, &double, &stable(), &[]), "compare.latency");
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
}

/// A histogram of 10 µs buckets from `(start_us, count)` pairs.
fn hist_us(buckets: &[(u64, u64)]) -> Vec<Bucket> {
    buckets
        .iter()
        .map(|&(us, count)| Bucket {
            low_us: us,
            high_us: us + 10,
            count,
        })
        .collect()
}

#[test]
fn a_sub_millisecond_slowdown_is_not_a_rollback_by_default() {
    // A cold canary process at ~200 µs against warm stable ones at ~100 µs: twice as slow,
    // beyond doubt, but 0.1 ms is not what users feel.
    let stable = window(950, 0, hist_us(&[(90, 300), (100, 350), (110, 300)]));
    let canary = window(200, 0, hist_us(&[(190, 60), (200, 80), (210, 60)]));
    let c = the(
        &judge(&Criteria::default(), &canary, &stable, &[]),
        "compare.latency",
    );
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
    assert!(c.observed.unwrap() > 1.9, "{}", c.detail);
    assert!(c.detail.contains("over 1.50x and +1.0 ms"), "{}", c.detail);
    // Without the absolute floor the ratio alone fails it.
    let ratio_only = Criteria {
        min_latency_increase_us: 0,
        ..Criteria::default()
    };
    let c = the(
        &judge(&ratio_only, &canary, &stable, &[]),
        "compare.latency",
    );
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
    // 1.5 ms slower on the same stable: over both minimums, it fails with the defaults.
    let slow = window(200, 0, hist_us(&[(1_590, 60), (1_600, 80), (1_610, 60)]));
    let c = the(
        &judge(&Criteria::default(), &slow, &stable, &[]),
        "compare.latency",
    );
    assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
    // Over the ratio but not the floor in the tested hypothesis: 0.9 ms slower on 1 ms.
    let stable_ms = window(950, 0, hist_us(&[(990, 300), (1_000, 350), (1_010, 300)]));
    let near = window(200, 0, hist_us(&[(1_890, 60), (1_900, 80), (1_910, 60)]));
    let c = the(
        &judge(&Criteria::default(), &near, &stable_ms, &[]),
        "compare.latency",
    );
    assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
}

#[test]
fn comparisons_wait_for_min_requests_on_both_sides() {
    let canary = window(30, 1, hist(&[(300, 30)]));
    let v = judge(&Criteria::default(), &canary, &stable(), &[]);
    assert_eq!(v.outcome, Outcome::Inconclusive);
    let errors = the(&v, "compare.errors").detail;
    assert!(
        errors.starts_with("canary 30, stable 950 of 50 requests; canary 3.3 % (1 of 30)"),
        "{errors}"
    );
    assert_eq!(
        the(&v, "compare.latency").detail,
        "canary 30, stable 950 of 50 latency samples"
    );
    let v = judge(&Criteria::default(), &stable(), &Window::default(), &[]);
    assert_eq!(v.outcome, Outcome::Inconclusive);
    assert_eq!(the(&v, "compare.latency").observed, None);
}

fn rule(name: &str, kind: MetricKind, min: Option<f64>, max: Option<f64>) -> MetricRule {
    MetricRule {
        name: name.into(),
        kind,
        min,
        max,
    }
}

fn reading(name: &str, value: Option<f64>) -> MetricReading {
    MetricReading {
        name: name.into(),
        value,
    }
}

#[test]
fn metric_rules_check_ranges_and_treat_no_reading_as_inconclusive() {
    let criteria = Criteria {
        compare: false,
        metrics: vec![
            rule("queue_depth", MetricKind::Gauge, None, Some(100.0)),
            rule("orders", MetricKind::Rate, Some(1.0), None),
            rule("cache_hits", MetricKind::Rate, Some(0.5), Some(1.0)),
            rule("absent", MetricKind::Gauge, None, Some(1.0)),
            rule("nan", MetricKind::Gauge, None, Some(1.0)),
        ],
        ..Criteria::default()
    };
    let readings = [
        reading("queue_depth", Some(120.0)),
        reading("orders", Some(2.5)),
        reading("cache_hits", Some(0.3)),
        reading("absent", None),
        reading("nan", Some(f64::NAN)),
    ];
    let v = judge(&criteria, &window(50, 0, vec![]), &stable(), &readings);
    let outcome = |name: &str| the(&v, name).outcome;
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(outcome("metric.queue_depth"), Outcome::Fail);
    assert_eq!(
        the(&v, "metric.queue_depth").detail,
        "queue_depth = 120 outside <= 100"
    );
    assert_eq!(outcome("metric.orders"), Outcome::Pass);
    assert_eq!(the(&v, "metric.orders").detail, "orders = 2.5 within >= 1");
    let hits = the(&v, "metric.cache_hits");
    assert_eq!((hits.outcome, hits.threshold), (Outcome::Fail, Some(0.5)));
    assert_eq!(hits.detail, "cache_hits = 0.3 outside [0.5, 1]");
    assert_eq!(outcome("metric.absent"), Outcome::Inconclusive);
    assert_eq!(outcome("metric.nan"), Outcome::Inconclusive);
    assert_eq!(
        v.summary,
        "fail: metric.queue_depth: queue_depth = 120 outside <= 100; \
         metric.cache_hits: cache_hits = 0.3 outside [0.5, 1]"
    );
    // Too few requests: even an out-of-range reading waits.
    let v = judge(&criteria, &window(10, 0, vec![]), &stable(), &readings);
    assert_eq!(v.outcome, Outcome::Inconclusive);
}

#[test]
fn checks_come_in_criteria_order_and_a_verdict_stores_as_json() {
    let criteria = Criteria {
        max_error_rate: Some(0.05),
        max_p99_us: Some(1_000_000),
        metrics: vec![rule("q", MetricKind::Gauge, None, Some(1.0))],
        ..Criteria::default()
    };
    let canary = window(60, 0, hist(&[(80, 15), (90, 15), (100, 15), (110, 15)]));
    let v = judge(&criteria, &canary, &stable(), &[reading("q", Some(0.5))]);
    let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "error_rate",
            "p99",
            "compare.errors",
            "compare.latency",
            "metric.q"
        ]
    );
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.summary);
    let json = serde_json::to_string(&v).unwrap();
    assert!(
        json.contains(r#""name":"compare.latency","outcome":"pass""#),
        "{json}"
    );
    // serde_json may round the last bit of a float: compare what matters.
    let back: Verdict = serde_json::from_str(&json).unwrap();
    assert_eq!((back.outcome, &back.summary), (v.outcome, &v.summary));
    for (a, b) in back.checks.iter().zip(&v.checks) {
        assert_eq!(
            (&a.name, a.outcome, &a.detail, a.samples),
            (&b.name, b.outcome, &b.detail, b.samples)
        );
        let near = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
            (x, y) => x == y,
        };
        assert!(
            near(a.observed, b.observed) && near(a.p_value, b.p_value),
            "{a:?}"
        );
    }

    let none = Criteria {
        compare: false,
        ..Criteria::default()
    };
    let v = judge(&none, &Window::default(), &Window::default(), &[]);
    assert_eq!((v.outcome, v.checks.len()), (Outcome::Pass, 0));
}

#[test]
fn comparisons_wait_for_min_requests_of_the_stable_release_too() {
    let latency = |n: u64| hist(&[(90, n / 2), (100, n - n / 2)]);
    let canary = window(950, 60, latency(950));
    let v = judge(
        &Criteria::default(),
        &canary,
        &window(49, 0, latency(49)),
        &[],
    );
    assert_eq!(v.outcome, Outcome::Inconclusive);
    let errors = the(&v, "compare.errors");
    assert_eq!(errors.outcome, Outcome::Inconclusive, "{}", errors.detail);
    assert!(
        errors
            .detail
            .starts_with("canary 950, stable 49 of 50 requests; "),
        "{}",
        errors.detail
    );
    let slow = the(&v, "compare.latency");
    assert_eq!(
        (slow.outcome, slow.detail.as_str()),
        (
            Outcome::Inconclusive,
            "canary 950, stable 49 of 50 latency samples"
        )
    );
    // Exactly min_requests on both sides is enough to judge.
    let v = judge(
        &Criteria::default(),
        &window(50, 0, latency(50)),
        &window(50, 0, latency(50)),
        &[],
    );
    assert_eq!(the(&v, "compare.errors").outcome, Outcome::Pass);
    assert_eq!(the(&v, "compare.latency").outcome, Outcome::Pass);
}

#[test]
fn a_metric_exactly_at_its_min_or_max_is_within_range() {
    let criteria = Criteria {
        compare: false,
        metrics: vec![
            rule("queue_depth", MetricKind::Gauge, None, Some(100.0)),
            rule("cache_hits", MetricKind::Rate, Some(0.5), Some(1.0)),
        ],
        ..Criteria::default()
    };
    let readings = [
        reading("queue_depth", Some(100.0)),
        reading("cache_hits", Some(0.5)),
    ];
    let v = judge(&criteria, &window(50, 0, vec![]), &stable(), &readings);
    assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
    assert_eq!(
        the(&v, "metric.queue_depth").detail,
        "queue_depth = 100 within <= 100"
    );
    assert_eq!(
        the(&v, "metric.cache_hits").detail,
        "cache_hits = 0.5 within [0.5, 1]"
    );
    // One request short of min_requests: the reading waits.
    let v = judge(&criteria, &window(49, 0, vec![]), &stable(), &readings);
    assert_eq!(the(&v, "metric.queue_depth").outcome, Outcome::Inconclusive);
}
