//! Simulated healthy and broken canaries run through the judge, with a seeded generator:
//! no false alarm on healthy-vs-healthy windows under noisy latency, and 3x latency or 30 %
//! errors caught as soon as the window holds `min_requests`.

use super::criteria::Criteria;
use super::judge::{CHECK_COMPARE_ERRORS, CHECK_COMPARE_LATENCY, CHECK_ERROR_RATE, judge};
use super::sequential::e_value_above;
use super::stats::{binomial_sf, mann_whitney_greater};
use super::verdict::{Outcome, Verdict};
use super::window::{Bucket, Window};

/// SplitMix64: a tiny, well-mixed generator; a fixed seed makes every run identical.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
}

/// The proxy's latency buckets: one per microsecond below 16, then 16 per power of two.
pub(super) fn bucket_of(us: u64) -> (u64, u64) {
    if us < 16 {
        return (us, us + 1);
    }
    let shift = 63 - us.leading_zeros() - 4;
    let low = (us >> shift) << shift;
    (low, low + (1 << shift))
}

/// A release's window as the proxy counts it, built one request at a time.
#[derive(Default)]
pub(super) struct Recorder {
    requests: u64,
    errors: u64,
    buckets: std::collections::BTreeMap<(u64, u64), u64>,
}

impl Recorder {
    pub(super) fn record(&mut self, latency_us: u64, error: bool) {
        self.requests += 1;
        self.errors += u64::from(error);
        *self.buckets.entry(bucket_of(latency_us)).or_default() += 1;
    }

    pub(super) fn window(&self) -> Window {
        let latency = self
            .buckets
            .iter()
            .map(|(&(low_us, high_us), &count)| Bucket {
                low_us,
                high_us,
                count,
            })
            .collect();
        Window {
            requests: self.requests,
            errors: self.errors,
            latency,
        }
    }
}

/// How one release behaves: log-normal latency with occasional stalls, and an error rate.
#[derive(Clone, Copy)]
struct Behaviour {
    median_us: f64,
    sigma: f64,
    /// Share of requests that stall (GC pause, cold cache) for 5-20x longer.
    stall: f64,
    /// Latencies rounded to this many microseconds (coarse app timers make many ties).
    grain_us: f64,
    error_rate: f64,
}

impl Behaviour {
    fn random(rng: &mut Rng) -> Self {
        Self {
            median_us: 5_000.0 * 40f64.powf(rng.unit()),
            sigma: rng.range(0.2, 1.2),
            stall: [0.0, 0.01, 0.05][(rng.unit() * 3.0) as usize],
            grain_us: [1.0, 1_000.0, 10_000.0][(rng.unit() * 3.0) as usize],
            error_rate: [0.0, 0.001, 0.005, 0.01, 0.02][(rng.unit() * 5.0) as usize],
        }
    }

    fn request(&self, rng: &mut Rng) -> (u64, bool) {
        let mut us = self.median_us * (self.sigma * rng.normal()).exp();
        if rng.unit() < self.stall {
            us *= rng.range(5.0, 20.0);
        }
        let us = (us / self.grain_us).ceil() * self.grain_us;
        (us as u64, rng.unit() < self.error_rate)
    }

    /// A p99 threshold a healthy release of this behaviour keeps: twice its p99 (estimated from
    /// 5000 requests, so the true p99 stays well below it).
    fn healthy_p99_us(&self, rng: &mut Rng) -> u64 {
        let mut sample: Vec<u64> = (0..5_000).map(|_| self.request(rng).0).collect();
        sample.sort_unstable();
        (sample[4_950] as f64 * 2.0) as u64
    }
}

fn criteria(max_p99_us: u64) -> Criteria {
    Criteria {
        min_requests: 50,
        max_error_rate: Some(0.05),
        max_p99_us: Some(max_p99_us),
        ..Criteria::default()
    }
}

/// One window at 5 % canary weight: `canary_n` canary requests and 19x as many stable.
fn windows(rng: &mut Rng, canary: Behaviour, stable: Behaviour, canary_n: u64) -> (Window, Window) {
    let (mut c, mut s) = (Recorder::default(), Recorder::default());
    for i in 0..canary_n * 20 {
        if i % 20 == 0 {
            let (us, err) = canary.request(rng);
            c.record(us, err);
        } else {
            let (us, err) = stable.request(rng);
            s.record(us, err);
        }
    }
    (c.window(), s.window())
}

/// The same behaviour on another instance: up to 15 % faster or slower.
fn jitter(rng: &mut Rng, b: Behaviour) -> Behaviour {
    Behaviour {
        median_us: b.median_us * rng.range(0.85, 1.15),
        ..b
    }
}

fn failed(v: &Verdict, check: &str) -> bool {
    v.checks
        .iter()
        .any(|c| c.name == check && c.outcome == Outcome::Fail)
}

#[test]
fn five_hundred_healthy_windows_never_fail() {
    let mut rng = Rng::new(0x5eed_0001);
    let sizes = [50, 60, 100, 200, 500, 1_000];
    let mut outcomes = [0; 3];
    let mut waiting = std::collections::BTreeMap::<String, u32>::new();
    for run in 0..500 {
        let base = Behaviour::random(&mut rng);
        let max_p99 = base.healthy_p99_us(&mut rng);
        let (canary, stable) = (jitter(&mut rng, base), jitter(&mut rng, base));
        let n = sizes[run % sizes.len()];
        let (cw, sw) = windows(&mut rng, canary, stable, n);
        let v = judge(&criteria(max_p99), &cw, &sw, &[]);
        assert_ne!(
            v.outcome,
            Outcome::Fail,
            "healthy run {run} failed: {}",
            v.summary
        );
        outcomes[v.outcome as usize] += 1;
        for c in v.checks_with(Outcome::Inconclusive) {
            *waiting.entry(c.name.clone()).or_default() += 1;
        }
    }
    // Healthy windows mostly pass outright; the rest wait for more data (an excess over a
    // threshold that is not beyond noise, in the smallest windows).
    assert!(
        outcomes[Outcome::Pass as usize] >= 425,
        "{outcomes:?} {waiting:?}"
    );
    println!(
        "healthy windows: {outcomes:?} (pass, fail, inconclusive); inconclusive checks: {waiting:?}"
    );
}

/// A rollout at 200 req/s and 5 % weight, judged every second over the step's window so
/// far; the second of the first failed verdict, if any.
fn first_failure(
    rng: &mut Rng,
    canary: Behaviour,
    stable: Behaviour,
    seconds: u64,
) -> Option<(u64, Verdict)> {
    first_failure_every(rng, canary, stable, 200, seconds)
}

/// A rollout at 5 % weight judged after every `per_judgement` requests (of both releases),
/// `judgements` times; the number of the first failed judgement, if any.
fn first_failure_every(
    rng: &mut Rng,
    canary: Behaviour,
    stable: Behaviour,
    per_judgement: u64,
    judgements: u64,
) -> Option<(u64, Verdict)> {
    let max_p99 = stable.healthy_p99_us(rng);
    let (mut c, mut s) = (Recorder::default(), Recorder::default());
    for (judgement, start) in (1..=judgements).zip((0..).step_by(per_judgement as usize)) {
        for i in start..start + per_judgement {
            let (b, rec) = if i % 20 == 0 {
                (&canary, &mut c)
            } else {
                (&stable, &mut s)
            };
            let (us, err) = b.request(rng);
            rec.record(us, err);
        }
        let v = judge(&criteria(max_p99), &c.window(), &s.window(), &[]);
        if v.outcome == Outcome::Fail {
            return Some((judgement, v));
        }
    }
    None
}

#[test]
fn two_hundred_healthy_rollouts_judged_four_times_a_second_never_fail() {
    let mut rng = Rng::new(0x5eed_0002);
    for run in 0..200 {
        let base = Behaviour::random(&mut rng);
        let (canary, stable) = (jitter(&mut rng, base), jitter(&mut rng, base));
        // 200 req/s judged every 250 ms for 15 s: 60 judgements of a growing window.
        if let Some((tick, v)) = first_failure_every(&mut rng, canary, stable, 50, 60) {
            panic!(
                "healthy rollout {run} failed at judgement {tick}: {}",
                v.summary
            );
        }
    }
}

#[test]
fn thirty_percent_errors_fail_before_min_requests() {
    let mut rng = Rng::new(0x5eed_0003);
    let mut canary_requests = Vec::new();
    for run in 0..100 {
        let stable = Behaviour::random(&mut rng);
        let canary = Behaviour {
            error_rate: 0.3,
            ..stable
        };
        // 200 req/s judged every 250 ms: 2 or 3 canary requests a judgement.
        let (tick, v) = first_failure_every(&mut rng, canary, stable, 50, 40)
            .unwrap_or_else(|| panic!("run {run}: 30 % errors not caught in 10 s"));
        let caught = failed(&v, CHECK_ERROR_RATE) || failed(&v, CHECK_COMPARE_ERRORS);
        assert!(caught, "run {run}: {}", v.summary);
        let errors = v
            .checks
            .iter()
            .find(|c| c.name == CHECK_ERROR_RATE)
            .unwrap();
        canary_requests.push(errors.samples);
        assert!(tick <= 40);
    }
    canary_requests.sort_unstable();
    // Against a 5 % max, seven errors in twenty are beyond doubt: the median run fails with
    // half of min_requests (50), and nearly every run before min_requests.
    let median = canary_requests[50];
    let before = canary_requests.iter().filter(|&&n| n < 50).count();
    println!("canary requests at the failure: median {median}, {canary_requests:?}");
    assert!(median <= 25, "median {median}: {canary_requests:?}");
    assert!(before >= 95, "{before} of 100 before min_requests");
}

#[test]
fn three_times_the_latency_fails_the_comparison() {
    let mut rng = Rng::new(0x5eed_0004);
    let mut at_five = 0;
    for run in 0..100 {
        let stable = Behaviour {
            sigma: rng.range(0.2, 0.8),
            ..Behaviour::random(&mut rng)
        };
        let canary = Behaviour {
            median_us: stable.median_us * 3.0,
            ..stable
        };
        let (second, v) = first_failure(&mut rng, canary, stable, 10)
            .unwrap_or_else(|| panic!("run {run}: 3x latency not caught in 10 s"));
        assert!(
            failed(&v, CHECK_COMPARE_LATENCY),
            "run {run}: {}",
            v.summary
        );
        at_five += u64::from(second == 5);
    }
    assert!(at_five >= 95, "caught at 5 s in {at_five} of 100 runs");
}

#[test]
fn a_slightly_slower_canary_is_not_a_failure_however_much_data() {
    // 20 % slower is significant with this much data, but below the minimum effect (1.5x).
    let mut rng = Rng::new(0x5eed_0005);
    let stable = Behaviour {
        median_us: 20_000.0,
        sigma: 0.5,
        stall: 0.01,
        grain_us: 1.0,
        error_rate: 0.01,
    };
    let canary = Behaviour {
        median_us: 24_000.0,
        ..stable
    };
    let (cw, sw) = windows(&mut rng, canary, stable, 5_000);
    let slower = mann_whitney_greater(&cw.latency, &sw.latency, 1.0).unwrap();
    assert!(slower.p_value < 1e-30, "{slower:?}");
    let v = judge(&criteria(10_000_000), &cw, &sw, &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.summary);
    let latency = v
        .checks
        .iter()
        .find(|c| c.name == CHECK_COMPARE_LATENCY)
        .unwrap();
    assert!(latency.p_value.unwrap() > 0.5, "{}", latency.detail);
    assert!(
        (latency.observed.unwrap() - 1.2).abs() < 0.05,
        "{}",
        latency.detail
    );
}

/// How many of `runs` canaries erring at exactly `rate` ever fail the absolute check against
/// `max = rate` at `alpha`, judged after every `every` of `requests` canary requests; by the
/// sequential test and by the fixed-sample binomial test (what the judge used before)
/// repeated at every judgement from `min` requests on.
fn false_alarms_at_the_max(
    rng: &mut Rng,
    rate: f64,
    alpha: f64,
    (runs, requests, every, min): (u32, u64, u64, u64),
) -> (u32, u32) {
    let (mut sequential, mut repeated) = (0, 0);
    for _ in 0..runs {
        let (mut seq_failed, mut rep_failed) = (false, false);
        let mut errors = 0;
        for n in 1..=requests {
            errors += u64::from(rng.unit() < rate);
            if n % every != 0 {
                continue;
            }
            seq_failed |= e_value_above(errors, n, rate) >= 1.0 / alpha;
            rep_failed |= n >= min && binomial_sf(errors, n, rate) < alpha;
        }
        sequential += u32::from(seq_failed);
        repeated += u32::from(rep_failed);
    }
    (sequential, repeated)
}

#[test]
fn the_error_rate_check_raises_at_most_alpha_false_alarms_however_often_judged() {
    // The worst healthy canary (its true rate is the max itself), judged after every 5
    // requests up to 1000. At alpha = 5 % (a loose level, so that the count is measurable),
    // at most 5 % of 1000 such canaries may ever fail; the same level as a fixed-sample test
    // repeated at every judgement fails several times as many.
    let mut rng = Rng::new(0x5eed_0006);
    for rate in [0.02, 0.05, 0.3] {
        let (sequential, repeated) =
            false_alarms_at_the_max(&mut rng, rate, 0.05, (1_000, 1_000, 5, 50));
        println!("rate {rate}: {sequential} sequential, {repeated} repeated fixed-sample of 1000");
        assert!(sequential <= 50, "rate {rate}: {sequential} of 1000");
        assert!(repeated > 100, "rate {rate}: {repeated} of 1000");
    }
}

#[test]
fn the_error_comparison_raises_at_most_alpha_false_alarms_however_often_judged() {
    // A canary exactly `min_error_diff` worse than the stable (2 % against 1 %) at 5 %
    // weight, judged after every 400 requests up to 40 000; alpha = 5 %.
    let mut rng = Rng::new(0x5eed_0007);
    let criteria = Criteria {
        confidence: 0.95,
        ..Criteria::default()
    };
    let mut alarms = 0;
    for _ in 0..200 {
        let (mut canary, mut stable) = (Window::default(), Window::default());
        for i in 0..40_000u64 {
            let (w, rate) = if i % 20 == 0 {
                (&mut canary, 0.02)
            } else {
                (&mut stable, 0.01)
            };
            w.requests += 1;
            w.errors += u64::from(rng.unit() < rate);
            if (i + 1) % 400 == 0
                && failed(
                    &judge(&criteria, &canary, &stable, &[]),
                    CHECK_COMPARE_ERRORS,
                )
            {
                alarms += 1;
                break;
            }
        }
    }
    println!("{alarms} of 200 ever failed");
    assert!(alarms <= 10, "{alarms} of 200");
}
