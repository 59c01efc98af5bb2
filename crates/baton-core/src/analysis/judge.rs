//! The judge: one window of the canary and of the stable release, plus the canary's app
//! metrics, against a step's criteria, into a verdict with its figures.

use super::criteria::{Criteria, MetricRule};
use super::figures::{e_value, latency, level, number, p_value, percent};
use super::sequential::{e_value_above, p_value_of, rate_lower_bound, rate_upper_bound};
use super::stats::{binomial_sf, mann_whitney_slower};
use super::verdict::{Check, Outcome, Verdict};
use super::window::{MetricReading, Window};

/// Name of the absolute error-rate check.
pub const CHECK_ERROR_RATE: &str = "error_rate";
/// Name of the absolute p99 latency check.
pub const CHECK_P99: &str = "p99";
/// Name of the comparison of error rates with the stable release.
pub const CHECK_COMPARE_ERRORS: &str = "compare.errors";
/// Name of the comparison of latencies with the stable release.
pub const CHECK_COMPARE_LATENCY: &str = "compare.latency";
/// Prefix of an app metric check's name, followed by the metric's name.
pub const CHECK_METRIC_PREFIX: &str = "metric.";
/// Share of samples allowed at or above `max_p99_us`: that is what "p99 below it" means.
pub const P99_ALLOWED_EXCEEDANCE: f64 = 0.01;
/// Largest e-value stored in a check: beyond it the evidence is overwhelming anyway, and an
/// infinite one would not survive JSON.
const E_VALUE_CAP: f64 = 1e300;

/// Judges the canary against `criteria`: absolute checks on `canary` and `metrics`, and,
/// when `criteria.compare`, comparisons with `stable` over the same window.
///
/// Pure and deterministic: the same inputs always give the same verdict.
pub fn judge(
    criteria: &Criteria,
    canary: &Window,
    stable: &Window,
    metrics: &[MetricReading],
) -> Verdict {
    let mut checks = Vec::new();
    if let Some(max) = criteria.max_error_rate {
        checks.push(error_rate(criteria, canary, max));
    }
    if let Some(max) = criteria.max_p99_us {
        checks.push(p99(criteria, canary, max));
    }
    if criteria.compare {
        checks.push(compare_errors(criteria, canary, stable));
        checks.push(compare_latency(criteria, canary, stable));
    }
    for rule in &criteria.metrics {
        checks.push(metric(criteria, canary, rule, metrics));
    }
    Verdict::from_checks(checks)
}

/// A check before any figure is read.
fn check(name: &str, outcome: Outcome, samples: u64, detail: String) -> Check {
    Check {
        name: name.to_string(),
        outcome,
        observed: None,
        threshold: None,
        p_value: None,
        e_value: None,
        samples,
        detail,
    }
}

/// `Fail` when the test is significant and the effect large enough, `pass` otherwise.
fn fail_if(fail: bool, pass: Outcome) -> Outcome {
    if fail { Outcome::Fail } else { pass }
}

/// Absolute error rate, as a sequential test valid at every judgement of the step's window:
/// fails as soon as the e-value against "the true rate is at most `max`" reaches
/// `1 / (1 - confidence)`, before `min_requests` too (overwhelming evidence needs no more
/// requests); passes only with `min_requests` and an observed rate at most `max`.
fn error_rate(criteria: &Criteria, canary: &Window, max: f64) -> Check {
    let (n, k) = (canary.requests, canary.error_count());
    let min = criteria.min_requests.max(1);
    let mut c = check(CHECK_ERROR_RATE, Outcome::Inconclusive, n, String::new());
    c.threshold = Some(max);
    c.observed = canary.error_rate();
    let Some(rate) = c.observed else {
        c.detail = format!("{n} of {min} requests");
        return c;
    };
    let e = e_value_above(k, n, max);
    let needed = 1.0 / criteria.alpha();
    c.e_value = Some(e.min(E_VALUE_CAP));
    c.p_value = Some(p_value_of(e));
    let counts = format!("error rate {} ({k} of {n})", percent(rate));
    let (max_text, e_text, needed_text) = (percent(max), e_value(e), number(needed));
    // `e >= needed` implies `rate > max`: at or below it, no alternative above `max` is more
    // likely than `max` itself, so the e-value is at most 1.
    c.detail = if e >= needed {
        c.outcome = Outcome::Fail;
        format!("{counts} > max {max_text}: e-value {e_text} >= {needed_text}")
    } else if n < min {
        format!("{n} of {min} requests; {counts}, e-value {e_text} (fails at {needed_text})")
    } else if rate <= max {
        c.outcome = Outcome::Pass;
        format!("{counts} <= max {max_text}")
    } else {
        format!(
            "{counts} > max {max_text} but within noise: e-value {e_text}, needs >= {needed_text}"
        )
    };
    c
}

/// Absolute p99: passes when the estimated p99 is at most `max_us`; fails when more than
/// 1 % of the samples are certainly at or above `max_us` and an exact one-sided binomial
/// test rejects "at most 1 % are".
fn p99(criteria: &Criteria, canary: &Window, max_us: u64) -> Check {
    let n = canary.samples();
    let min = criteria.min_requests.max(1);
    let mut c = check(CHECK_P99, Outcome::Inconclusive, n, String::new());
    c.threshold = Some(max_us as f64);
    c.observed = canary.quantile_us(0.99);
    let Some(p99) = c.observed.filter(|_| n >= min) else {
        c.detail = format!("{n} of {min} latency samples");
        return c;
    };
    let head = format!("p99 {} ", latency(p99));
    let max = latency(max_us as f64);
    if p99 <= max_us as f64 {
        c.outcome = Outcome::Pass;
        c.detail = format!("{head}<= max {max} ({n} samples)");
        return c;
    }
    let above = canary.samples_at_or_above(max_us);
    let p = binomial_sf(above, n, P99_ALLOWED_EXCEEDANCE);
    let alpha = criteria.alpha();
    // The share gate is implied by `p < alpha` (its mutants are equivalent): at or below
    // the allowed share, `above <= floor(n * 1 %)` <= the binomial median, so p >= 1/2 > alpha
    // (`confidence` > 0.5). It stays to say the rule plainly.
    let fail = above as f64 > P99_ALLOWED_EXCEEDANCE * n as f64 && p < alpha;
    c.p_value = Some(p);
    c.outcome = fail_if(fail, Outcome::Inconclusive);
    let share = percent(above as f64 / n as f64);
    let counts = format!("{above} of {n} samples ({share}) at or above it");
    c.detail = if fail {
        format!(
            "{head}> max {max}: {counts}, p = {} < {}",
            p_value(p),
            level(alpha)
        )
    } else {
        format!(
            "{head}> max {max} but within noise: {counts}, p = {}",
            p_value(p)
        )
    };
    c
}

/// Error rates against the stable release, as a sequential test valid at every judgement
/// of the step's window: fails as soon as the canary's rate is, beyond doubt, more than
/// `min_error_diff` above the stable's, before `min_requests` too. "Beyond doubt" means that
/// the canary's always-valid lower bound exceeds the stable's always-valid upper bound by
/// more than the margin, each bound at `(1 - confidence) / 2`: when the canary is within the
/// margin, both bounds hold at every judgement with probability at least `confidence`, and
/// then they cannot be that far apart. Passes with `min_requests` on both sides otherwise.
///
/// The margin is what keeps a healthy canary from failing in one of the many judgements of
/// a rollout: "4 errors in 50 against 0.3 %" is worse, but not worse by more than a point.
fn compare_errors(criteria: &Criteria, canary: &Window, stable: &Window) -> Check {
    let (n1, n2) = (canary.requests, stable.requests);
    let min = criteria.min_requests.max(1);
    let mut c = check(
        CHECK_COMPARE_ERRORS,
        Outcome::Inconclusive,
        n1,
        String::new(),
    );
    c.threshold = Some(criteria.min_error_diff);
    let waiting = format!("canary {n1}, stable {n2} of {min} requests");
    let (Some(r1), Some(r2)) = (canary.error_rate(), stable.error_rate()) else {
        c.detail = waiting;
        return c;
    };
    let diff = r1 - r2;
    c.observed = Some(diff);
    let (x1, x2) = (canary.error_count(), stable.error_count());
    let margin = criteria.min_error_diff.max(0.0);
    let alpha = criteria.alpha();
    let low = rate_lower_bound(x1, n1, alpha / 2.0);
    let high = rate_upper_bound(x2, n2, alpha / 2.0);
    let fail = low - high > margin;
    let figures = format!(
        "canary {} ({x1} of {n1}) vs stable {} ({x2} of {n2}): {:+.2} points; \
         at {}: canary at least {}, stable at most {}, {:+.2} points apart (fails above {:.2})",
        percent(r1),
        percent(r2),
        diff * 100.0,
        percent(1.0 - alpha),
        percent(low),
        percent(high),
        (low - high) * 100.0,
        margin * 100.0,
    );
    c.detail = if fail {
        c.outcome = Outcome::Fail;
        figures
    } else if n1 < min || n2 < min {
        format!("{waiting}; {figures}")
    } else {
        c.outcome = Outcome::Pass;
        figures
    };
    c
}

/// Latency against the stable release: fails when a one-sided Mann-Whitney U test says, at
/// `confidence`, that the canary is slower than `min_latency_ratio` times the stable and by
/// more than `min_latency_increase`, and its typical latency (geometric mean) is indeed at
/// least that ratio of the stable's and that much above it.
///
/// Putting the minimum effect into the tested hypothesis (not only into a gate on the point
/// estimate) is what keeps a healthy canary on a slightly slower instance (say 1.3x) from
/// failing by chance in one of the many judgements of a rollout: the test asks "slower than
/// 1.5x?", never "slower at all?".
fn compare_latency(criteria: &Criteria, canary: &Window, stable: &Window) -> Check {
    let (n1, n2) = (canary.samples(), stable.samples());
    let min = criteria.min_requests.max(1);
    let mut c = check(
        CHECK_COMPARE_LATENCY,
        Outcome::Inconclusive,
        n1,
        String::new(),
    );
    c.threshold = Some(criteria.min_latency_ratio);
    let typical = (canary.typical_us(), stable.typical_us());
    let shift = criteria.min_latency_ratio.max(1.0);
    let plus = criteria.min_latency_increase_us as f64;
    let mw = mann_whitney_slower(&canary.latency, &stable.latency, shift, plus);
    let (Some(t1), Some(t2), Some(mw)) = (typical.0, typical.1, mw) else {
        c.detail = format!("canary {n1}, stable {n2} of {min} latency samples");
        return c;
    };
    let ratio = t1 / t2;
    c.observed = Some(ratio);
    if n1 < min || n2 < min {
        c.detail = format!("canary {n1}, stable {n2} of {min} latency samples");
        return c;
    }
    let alpha = criteria.alpha();
    c.p_value = Some(mw.p_value);
    c.outcome = fail_if(
        mw.p_value < alpha && ratio >= criteria.min_latency_ratio && t1 - t2 >= plus,
        Outcome::Pass,
    );
    let median = |w: &Window| w.quantile_us(0.5).map_or("-".to_string(), latency);
    let and = if plus > 0.0 {
        format!(" and +{}", latency(plus))
    } else {
        String::new()
    };
    c.detail = format!(
        "canary typical {} vs stable {}: ratio {ratio:.2} (min {shift:.2}), Mann-Whitney p = {} \
         that it is over {shift:.2}x{and} (needs < {}); medians {} vs {}, {n1} vs {n2} samples",
        latency(t1),
        latency(t2),
        p_value(mw.p_value),
        level(alpha),
        median(canary),
        median(stable),
    );
    c
}

/// An app metric of the canary against its range. No reading (or a non-finite one) is
/// inconclusive; like every absolute check it waits for `min_requests`.
fn metric(
    criteria: &Criteria,
    canary: &Window,
    rule: &MetricRule,
    readings: &[MetricReading],
) -> Check {
    let name = format!("{CHECK_METRIC_PREFIX}{}", rule.name);
    let n = canary.requests;
    let min_requests = criteria.min_requests.max(1);
    let mut c = check(&name, Outcome::Inconclusive, n, String::new());
    c.threshold = rule.max.or(rule.min);
    let value = readings
        .iter()
        .find(|r| r.name == rule.name)
        .and_then(|r| r.value);
    let Some(value) = value.filter(|v| v.is_finite()) else {
        c.detail = format!("{} not read: the app exposes no value for it", rule.name);
        return c;
    };
    c.observed = Some(value);
    if n < min_requests {
        c.detail = format!(
            "{} = {}, but {n} of {min_requests} requests",
            rule.name,
            number(value)
        );
        return c;
    }
    let range = match (rule.min, rule.max) {
        (Some(lo), Some(hi)) => format!("[{}, {}]", number(lo), number(hi)),
        (Some(lo), None) => format!(">= {}", number(lo)),
        (None, Some(hi)) => format!("<= {}", number(hi)),
        (None, None) => "any value".to_string(),
    };
    let below = rule.min.filter(|&lo| value < lo);
    let above = rule.max.filter(|&hi| value > hi);
    c.threshold = below.or(above).or(c.threshold);
    c.outcome = fail_if(below.is_some() || above.is_some(), Outcome::Pass);
    let verb = if c.outcome == Outcome::Fail {
        "outside"
    } else {
        "within"
    };
    c.detail = format!("{} = {} {verb} {range}", rule.name, number(value));
    c
}
