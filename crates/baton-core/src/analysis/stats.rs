//! The statistics behind the judges, implemented here so the core needs no maths crate:
//! the normal tail, exact binomial and hypergeometric tails, a one-sided two-proportion test
//! and a one-sided Mann-Whitney U test on latency histograms.
//!
//! Accuracy: the normal tail has a relative error below 1.2e-7 everywhere (deep tails
//! included); the exact tails are summed from log-gamma to about 1e-12 relative. Both are far
//! finer than any confidence level a canary uses.

use std::f64::consts::{PI, SQRT_2};

use serde::{Deserialize, Serialize};

use super::window::Bucket;

/// Below this expected count in any cell of the 2x2 table, the proportion test is Fisher's
/// exact test instead of the z-test (Cochran's rule).
pub const MIN_EXPECTED_FOR_Z: f64 = 5.0;

/// The complementary error function, `erfc(x) = 1 - erf(x)`: the Chebyshev fit of Numerical
/// Recipes (`erfcc`), fractional error below 1.2e-7 for every `x`.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Upper tail of the standard normal distribution, `P(Z >= z)`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// `ln Γ(x)` for `x >= 0.5` (Lanczos, g = 7, nine terms; about 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + G + 0.5;
    let series = C[0]
        + C.iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| c / (x + i as f64))
            .sum::<f64>();
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// `ln C(n, k)` for `k <= n`.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Sums `first` and the terms after it, each the previous one times `ratio(step)` for
/// `step` in `0..steps`. The terms must be non-increasing (the caller walks away from the
/// mode), so the sum stops as soon as a term no longer changes it.
fn sum_shrinking(first: f64, steps: u64, ratio: impl Fn(u64) -> f64) -> f64 {
    let (mut term, mut sum) = (first, first);
    for step in 0..steps {
        term *= ratio(step);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    sum
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`: the exact one-sided p-value of observing `k` or
/// more events in `n` trials when the true rate is `p`.
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 || p >= 1.0 {
        return 1.0;
    }
    if k > n || p <= 0.0 || p.is_nan() {
        return if p.is_nan() { 1.0 } else { 0.0 };
    }
    let (nf, q) = (n as f64, 1.0 - p);
    let odds = p / q;
    let ln_pmf = |i: u64| ln_choose(n, i) + i as f64 * p.ln() + (n - i) as f64 * (-p).ln_1p();
    if k as f64 > nf * p {
        // Above the mean the terms shrink upward: sum P(X = k) + P(X = k + 1) + ...
        let ratio = |s: u64| {
            let i = (k + s) as f64;
            (nf - i) / (i + 1.0) * odds
        };
        sum_shrinking(ln_pmf(k).exp(), n - k, ratio).min(1.0)
    } else {
        // At or below the mean the tail is large: 1 - (P(X = k - 1) + P(X = k - 2) + ...).
        let ratio = |s: u64| {
            let i = (k - 1 - s) as f64;
            i / (nf - i + 1.0) / odds
        };
        (1.0 - sum_shrinking(ln_pmf(k - 1).exp(), k - 1, ratio)).clamp(0.0, 1.0)
    }
}

/// `P(A >= a)` for `A` the number of marked items among `draws` taken without replacement
/// from `total` items of which `marked` are marked (the hypergeometric distribution): the
/// one-sided p-value of Fisher's exact test.
pub fn hypergeometric_sf(a: u64, draws: u64, marked: u64, total: u64) -> f64 {
    let (draws, marked) = (draws.min(total), marked.min(total));
    let lo = (draws + marked).saturating_sub(total);
    let hi = draws.min(marked);
    if a <= lo {
        return 1.0;
    }
    if a > hi {
        return 0.0;
    }
    let (n, k, t) = (draws as f64, marked as f64, total as f64);
    let ln_pmf = |i: u64| {
        ln_choose(marked, i) + ln_choose(total - marked, draws - i) - ln_choose(total, draws)
    };
    // The mode only picks which of two equal sums is added up: the upper tail itself, or one
    // minus the lower tail, as exact where the tail is large. Mutants that move the mode a
    // little, or send `a == mode` the other way, are equivalent; a far tail (tested down to
    // 1e-17) needs the direct sum.
    let mode = ((n + 1.0) * (k + 1.0) / (t + 2.0)).floor();
    if a as f64 > mode {
        let ratio = |s: u64| {
            let i = (a + s) as f64;
            (k - i) * (n - i) / ((i + 1.0) * (t - k - n + i + 1.0))
        };
        // More terms than `hi - a` would add zeros (the ratio is 0 at `i = hi`).
        sum_shrinking(ln_pmf(a).exp(), hi - a, ratio).min(1.0)
    } else {
        let ratio = |s: u64| {
            let i = (a - 1 - s) as f64;
            i * (t - k - n + i) / ((k - i + 1.0) * (n - i + 1.0))
        };
        // More terms than `a - 1 - lo` would add zeros (the ratio is 0 at `i = lo`).
        (1.0 - sum_shrinking(ln_pmf(a - 1).exp(), a - 1 - lo, ratio)).clamp(0.0, 1.0)
    }
}

/// Which test [`proportion_greater`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionTest {
    /// Fisher's exact test (one-sided), for small expected counts.
    FisherExact,
    /// The pooled two-proportion z-test (one-sided).
    ZTest,
}

impl ProportionTest {
    /// The test's name for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FisherExact => "Fisher exact",
            Self::ZTest => "two-proportion z",
        }
    }
}

/// One-sided p-value that the rate behind `x1` of `n1` is greater than the rate behind `x2`
/// of `n2`, and the test used: Fisher's exact test when any cell of the 2x2 table expects
/// fewer than [`MIN_EXPECTED_FOR_Z`] counts, the pooled z-test otherwise.
pub fn proportion_greater(x1: u64, n1: u64, x2: u64, n2: u64) -> (f64, ProportionTest) {
    let (x1, x2) = (x1.min(n1), x2.min(n2));
    let (n, x) = (n1 + n2, x1 + x2);
    if n1 == 0 || n2 == 0 {
        return (1.0, ProportionTest::FisherExact);
    }
    let (nf, xf) = (n as f64, x as f64);
    let min_expected = [n1 as f64, n2 as f64]
        .into_iter()
        .flat_map(|m| [m * xf / nf, m * (nf - xf) / nf])
        .fold(f64::INFINITY, f64::min);
    if min_expected < MIN_EXPECTED_FOR_Z {
        return (hypergeometric_sf(x1, n1, x, n), ProportionTest::FisherExact);
    }
    let pooled = xf / nf;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let z = (x1 as f64 / n1 as f64 - x2 as f64 / n2 as f64) / se;
    (normal_sf(z), ProportionTest::ZTest)
}

/// One-sided p-value that the rate behind `x1` of `n1` exceeds the rate behind `x2` of `n2`
/// by more than `margin` (H0: `p1 - p2 <= margin`), by the Agresti-Caffo adjusted z-test:
/// add one event and one non-event to each sample, then a Wald test of the difference
/// against the margin. The adjustment keeps it honest with few or no events, where the plain
/// Wald test is overconfident.
pub fn difference_above(x1: u64, n1: u64, x2: u64, n2: u64, margin: f64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let adjusted = |x: u64, n: u64| {
        let (x, n) = (x.min(n) as f64 + 1.0, n as f64 + 2.0);
        let p = x / n;
        (p, p * (1.0 - p) / n)
    };
    let ((p1, v1), (p2, v2)) = (adjusted(x1, n1), adjusted(x2, n2));
    normal_sf((p1 - p2 - margin) / (v1 + v2).sqrt())
}

/// The result of a one-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// `U` of the first sample: pairs where it is larger, plus half the ties.
    pub u: f64,
    /// The standardised statistic, with tie and continuity corrections.
    pub z: f64,
    /// `P(U >= u)` under the null hypothesis of equal distributions (normal approximation).
    pub p_value: f64,
}

/// The value a histogram bucket stands for in the rank test: its midpoint, or its lower
/// bound for the open top bucket.
fn bucket_value(b: &Bucket) -> f64 {
    if b.high_us == u64::MAX || b.high_us <= b.low_us {
        b.low_us as f64
    } else {
        (b.low_us as f64 + b.high_us as f64) / 2.0
    }
}

/// One-sided Mann-Whitney U test that the values of histogram `a`, divided by `shift`, tend
/// to be larger than those of histogram `b`. With `shift = 1` it asks "is `a` larger?"; with
/// `shift = 1.5` it asks "is `a` more than 1.5 times `b`?", so the minimum effect is part
/// of the hypothesis rather than a separate gate. [`mann_whitney_slower`] adds an absolute
/// minimum effect.
///
/// Each bucket stands for its midpoint. Samples at equal values (with `shift = 1`, the same
/// bucket of both histograms) are one tie group: they get the group's mid-rank and the
/// variance carries the usual tie correction, so coarse buckets make the test more cautious
/// rather than wrong. `None` when either histogram is empty.
pub fn mann_whitney_greater(a: &[Bucket], b: &[Bucket], shift: f64) -> Option<MannWhitney> {
    mann_whitney_slower(a, b, shift, 0.0)
}

/// [`mann_whitney_greater`] with a minimum effect both relative and absolute: is `a` larger
/// than each value `v` of `b` moved to `max(v * ratio, v + plus)`? "More than 1.5 times and
/// more than 1 ms slower" for latencies in microseconds. The move is monotone, so the ranks
/// (and the test's validity) are those of a shifted `b`.
pub fn mann_whitney_slower(
    a: &[Bucket],
    b: &[Bucket],
    ratio: f64,
    plus: f64,
) -> Option<MannWhitney> {
    let moved = |v: f64| {
        if plus > 0.0 {
            (v * ratio).max(v + plus)
        } else {
            v * ratio
        }
    };
    let mut groups: Vec<(f64, f64, f64)> = a
        .iter()
        .map(|x| (bucket_value(x), x.count as f64, 0.0))
        .chain(
            b.iter()
                .map(|x| (moved(bucket_value(x)), 0.0, x.count as f64)),
        )
        .filter(|g| g.1 + g.2 > 0.0)
        .collect();
    groups.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut u, mut b_below, mut ties, mut n1, mut n2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < groups.len() {
        let (mut ca, mut cb) = (0.0, 0.0);
        let value = groups[i].0;
        while i < groups.len() && groups[i].0 == value {
            ca += groups[i].1;
            cb += groups[i].2;
            i += 1;
        }
        u += ca * (b_below + 0.5 * cb);
        b_below += cb;
        let t = ca + cb;
        ties += t * (t * t - 1.0);
        n1 += ca;
        n2 += cb;
    }
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // Every sample in one tie group: no evidence either way.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Some(MannWhitney {
        u,
        z,
        p_value: normal_sf(z),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got:e}, want {want:e}"
        );
    }

    #[test]
    fn normal_tail_matches_tables() {
        close(normal_sf(0.0), 0.5, 1e-7);
        close(normal_sf(1.959_963_985), 0.025, 1e-6);
        close(normal_sf(2.326_347_874), 0.01, 1e-6);
        close(normal_sf(3.090_232_306), 0.001, 1e-6);
        close(normal_sf(-1.644_853_627), 0.95, 1e-6);
        close(normal_sf(8.0), 6.220_960_574_271_78e-16, 1e-6);
        close(erfc(1.0), 0.157_299_207_050_285_1, 1e-7);
    }

    #[test]
    fn log_gamma_gives_factorials() {
        close(ln_gamma(1.0).exp(), 1.0, 1e-13);
        close(ln_gamma(6.0).exp(), 120.0, 1e-13);
        close(ln_gamma(0.5).exp(), PI.sqrt(), 1e-13);
        close(ln_choose(50, 15), (2_250_829_575_120.0f64).ln(), 1e-13);
    }

    #[test]
    fn binomial_tail_matches_exact_sums() {
        // Values from the exact sums (R: pbinom(k - 1, n, p, lower.tail = FALSE)).
        close(binomial_sf(1, 10, 0.5), 1.0 - 1.0 / 1024.0, 1e-12);
        close(binomial_sf(10, 10, 0.5), 1.0 / 1024.0, 1e-12);
        close(binomial_sf(8, 10, 0.5), 56.0 / 1024.0, 1e-12);
        close(binomial_sf(3, 10, 0.5), 1.0 - 56.0 / 1024.0, 1e-12);
        close(binomial_sf(15, 50, 0.05), 1.287_458_026e-8, 1e-6);
        close(binomial_sf(15, 50, 0.1), 7.383_868_61e-5, 1e-6);
        close(binomial_sf(3, 100, 0.01), 0.079_373_202_25, 1e-6);
        assert_eq!(binomial_sf(0, 5, 0.3), 1.0);
        assert_eq!(binomial_sf(6, 5, 0.3), 0.0);
        assert_eq!(binomial_sf(1, 5, 0.0), 0.0);
        assert_eq!(binomial_sf(5, 5, 1.0), 1.0);
    }

    #[test]
    fn binomial_tail_is_fast_and_sane_for_big_windows() {
        let p = binomial_sf(1_100, 100_000, 0.01);
        assert!(p > 0.0005 && p < 0.002, "{p}");
        assert!(binomial_sf(30_000, 100_000, 0.05) < 1e-300);
        close(binomial_sf(500, 100_000, 0.005), 0.5, 0.05);
    }

    #[test]
    fn hypergeometric_tail_matches_fishers_tea() {
        // Fisher's lady tasting tea: 3 of 4 right, one-sided p = 17/70.
        close(hypergeometric_sf(3, 4, 4, 8), 17.0 / 70.0, 1e-12);
        close(hypergeometric_sf(4, 4, 4, 8), 1.0 / 70.0, 1e-12);
        close(hypergeometric_sf(1, 4, 4, 8), 69.0 / 70.0, 1e-12);
        assert_eq!(hypergeometric_sf(0, 4, 4, 8), 1.0);
        assert_eq!(hypergeometric_sf(5, 4, 4, 8), 0.0);
    }

    #[test]
    fn hypergeometric_tail_matches_exact_sums_on_both_branches() {
        // Exact sums of C(K, i) C(N - K, n - i) / C(N, n) over i >= a, from Python's
        // math.comb with fractions (what scipy.stats.hypergeom.sf(a - 1, N, K, n) computes).
        // (a, draws n, marked K, total N): below the mode the code sums the lower tail.
        let cases = [
            ((5, 50, 200, 1000), 0.983_605_817_544_345_7),
            ((3, 50, 60, 1000), 0.589_334_032_404_647_2),
            ((2, 10, 5, 30), 0.551_218_896_046_482_2),
            ((15, 50, 200, 1000), 0.055_951_948_338_164_64),
            ((7, 20, 9, 40), 0.063_693_063_693_063_7),
            ((4, 50, 7, 1000), 1.738_482_333_707_095_8e-4),
            ((12, 100, 40, 1000), 2.688_377_121_373_222e-4),
            ((8, 50, 10, 1000), 9.278_399_285_063_367e-10),
            ((15, 50, 20, 1000), 4.279_740_733_328_539e-17),
        ];
        for ((a, n, k, t), want) in cases {
            close(hypergeometric_sf(a, n, k, t), want, 1e-9);
        }
        // As the canary's error test: 4 of 50 against 3 of 950, 3 of 50 against 57 of 950.
        let (p, test) = proportion_greater(4, 50, 3, 950);
        assert_eq!(test, ProportionTest::FisherExact);
        close(p, 1.738_482_333_707_095_8e-4, 1e-9);
        close(
            proportion_greater(3, 50, 57, 950).0,
            0.589_334_032_404_647_2,
            1e-9,
        );
    }

    #[test]
    fn proportions_use_fisher_for_small_counts_and_z_for_large() {
        let (p, test) = proportion_greater(15, 50, 5, 950);
        assert_eq!(test, ProportionTest::FisherExact);
        assert!(p < 1e-12, "{p}");
        let (p, test) = proportion_greater(1, 50, 19, 950);
        assert_eq!(test, ProportionTest::FisherExact);
        assert!(p > 0.5, "{p}");
        let (p, test) = proportion_greater(150, 1_000, 100, 1_000);
        assert_eq!(test, ProportionTest::ZTest);
        // z = 0.05 / sqrt(0.125 * 0.875 * 0.002) = 3.3806
        close(p, normal_sf(3.380_617), 1e-5);
        assert_eq!(proportion_greater(0, 100, 0, 1_000).0, 1.0);
        assert_eq!(proportion_greater(0, 0, 3, 10).0, 1.0);
    }

    fn hist(counts: &[u64]) -> Vec<Bucket> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &count)| Bucket {
                low_us: i as u64 * 10,
                high_us: i as u64 * 10 + 10,
                count,
            })
            .collect()
    }

    #[test]
    fn difference_above_a_margin_needs_more_than_the_margin() {
        // p1 = 16/52, p2 = 11/952, variances p(1 - p)/52 and p(1 - p)/952.
        let (p1, p2) = (16.0 / 52.0, 11.0 / 952.0);
        let z = (p1 - p2 - 0.01) / (p1 * (1.0 - p1) / 52.0 + p2 * (1.0 - p2) / 952.0f64).sqrt();
        assert!(z > 4.4, "{z}");
        close(difference_above(15, 50, 10, 950, 0.01), normal_sf(z), 1e-12);
        // 4 of 50 against 3 of 950 is "worse", but not surely by more than a point.
        let p = difference_above(4, 50, 3, 950, 0.01);
        assert!(p > 0.01 && p < 0.05, "{p}");
        assert!(proportion_greater(4, 50, 3, 950).0 < 0.001);
        // Equal rates are never above a positive margin; no data is no evidence.
        assert!(difference_above(100, 1_000, 1_900, 19_000, 0.01) > 0.8);
        assert_eq!(difference_above(3, 0, 1, 10, 0.0), 1.0);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_case() {
        // a = {2, 3}, b = {0, 1}: every pair has a larger, U = 4, mean 2, var 4*5/12.
        let mw = mann_whitney_greater(&hist(&[0, 0, 1, 1]), &hist(&[1, 1]), 1.0).unwrap();
        assert_eq!(mw.u, 4.0);
        close(mw.z, 1.5 / (20.0f64 / 12.0).sqrt(), 1e-12);
        // Reversed, the evidence points the other way.
        let mw = mann_whitney_greater(&hist(&[1, 1]), &hist(&[0, 0, 1, 1]), 1.0).unwrap();
        assert_eq!(mw.u, 0.0);
        assert!(mw.p_value > 0.9);
    }

    #[test]
    fn mann_whitney_counts_a_shared_bucket_as_ties() {
        // a = {1, 1, 2}, b = {0, 1}: pairs where a is larger 4, ties 2 (each counts 1/2): U = 5.
        // Tie groups 1, 3, 1 => sum(t^3 - t) = 24; var = 6/12 * (6 - 24/20) = 2.4.
        let mw = mann_whitney_greater(&hist(&[0, 2, 1]), &hist(&[1, 1]), 1.0).unwrap();
        assert_eq!(mw.u, 5.0);
        close(mw.z, (5.0 - 3.0 - 0.5) / 2.4f64.sqrt(), 1e-12);
        let same = mann_whitney_greater(&hist(&[0, 7]), &hist(&[0, 90]), 1.0).unwrap();
        assert_eq!((same.z, same.p_value), (0.0, 1.0));
        assert!(mann_whitney_greater(&hist(&[]), &hist(&[3]), 1.0).is_none());
    }

    #[test]
    fn mann_whitney_sees_a_clear_shift_in_big_samples() {
        let a = hist(&[0, 0, 0, 100, 200, 100]);
        let b = hist(&[100, 200, 100, 0, 0, 0]);
        let mw = mann_whitney_greater(&a, &b, 1.0).unwrap();
        assert!(mw.p_value < 1e-30, "{:e}", mw.p_value);
        let b2 = hist(&[0, 0, 0, 100, 200, 100]);
        assert!(mann_whitney_greater(&a, &b2, 1.0).unwrap().p_value > 0.4);
    }

    #[test]
    fn mann_whitney_with_a_shift_asks_for_more_than_that_factor() {
        // a sits at 55..75 µs (bucket midpoints), b at 5..25: a is about 4x b. More than
        // twice b: certainly; more than six times b: no.
        let a = hist(&[0, 0, 0, 0, 0, 100, 200, 100]);
        let b = hist(&[100, 200, 100]);
        assert!(mann_whitney_greater(&a, &b, 1.0).unwrap().p_value < 1e-30);
        assert!(mann_whitney_greater(&a, &b, 2.0).unwrap().p_value < 1e-30);
        assert!(mann_whitney_greater(&a, &b, 6.0).unwrap().p_value > 0.99);
    }
}
