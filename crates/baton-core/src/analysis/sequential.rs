//! Always-valid tests of an error rate: mixture likelihood ratios (e-values) of a growing
//! window's counts, whose false-alarm rate stays bounded however often the window is judged.
//!
//! Under "the true error rate is at most `p`", each request multiplies the likelihood ratio of
//! a rate `q > p` against `p` by `q / p` (an error) or `(1 - q) / (1 - p)` (a success), a
//! factor whose expectation is at most 1. The ratio is therefore a nonnegative
//! supermartingale, and so is any weighted mean of such ratios (a *mixture* over the
//! alternative rates, so no one bad rate has to be guessed). Ville's inequality bounds the
//! chance that it *ever* reaches `1 / alpha` by `alpha`: judging after every request, every
//! interval or only at the end all stay within `alpha`. This is Wald's sequential probability
//! ratio test with a mixture alternative (Robbins 1970), the "e-value" of Howard et al. 2021
//! ("Time-uniform, nonparametric, nonasymptotic confidence sequences").
//!
//! The same e-values, computed for every candidate rate, give confidence bounds valid at every
//! judgement at once (a *confidence sequence*), which is how the canary is compared with the
//! stable release.
//!
//! Assumption: requests fail independently at a rate that does not change within the window.

/// Alternatives below one half: `0.5 * 2^(-i/2)` for `i` in `0..GRID_LOW` (50 % down to
/// 0.006 %). Dense in ratio, because error rates that matter span several decades.
const GRID_LOW: i32 = 27;
/// Alternatives above one half: `1 - 0.5 * 2^(-i)` for `i` in `1..=GRID_HIGH` (75 % to 99.2 %).
const GRID_HIGH: i32 = 6;
/// Number of alternatives in the grid.
const GRID_LEN: usize = (GRID_LOW + GRID_HIGH) as usize;

/// The alternative error rates the mixtures weigh, each with the same weight.
fn grid() -> impl Iterator<Item = f64> {
    let low = (0..GRID_LOW).map(|i| 0.5 * 2f64.powf(-f64::from(i) / 2.0));
    let high = (1..=GRID_HIGH).map(|i| 1.0 - 0.5 * 2f64.powi(-i));
    low.chain(high)
}

/// Which alternatives a mixture weighs: rates above the null's (evidence that the rate is
/// higher) or below it (evidence that it is lower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Above,
    Below,
}

/// ln of the likelihood ratio of rate `q` against rate `p` for `k` errors in `n` requests.
/// A count of zero adds nothing (so `p` may be 0 or 1 without a NaN).
fn log_ratio(k: u64, n: u64, q: f64, p: f64) -> f64 {
    let successes = n - k;
    let mut log = 0.0;
    if k > 0 {
        log += k as f64 * (q / p).ln();
    }
    if successes > 0 {
        log += successes as f64 * ((1.0 - q) / (1.0 - p)).ln();
    }
    log
}

/// ln of the mixture e-value against rate `p`: the grid's alternatives on `side` of `p`, each
/// weighted `1 / GRID_LEN`, or, when `normalized`, `1 / (alternatives on that side)`.
/// `-inf` when no alternative is on that side.
fn log_mixture(k: u64, n: u64, p: f64, side: Side, normalized: bool) -> f64 {
    let terms: Vec<f64> = grid()
        .filter(|&q| match side {
            Side::Above => q > p,
            Side::Below => q < p,
        })
        .map(|q| log_ratio(k, n, q, p))
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    let weight = if normalized { terms.len() } else { GRID_LEN };
    max + sum.ln() - (weight as f64).ln()
}

/// The e-value against "the error rate is at most `max`" after `errors` of `requests`: the
/// mean likelihood ratio, against `max`, of the grid's rates above `max`. Reaching
/// `1 / alpha` at any judgement happens with probability at most `alpha` when the rate is at
/// most `max`. 0 when no alternative lies above `max` (it is 99.2 % or more); infinite when
/// `max` is 0 and an error happened.
pub fn e_value_above(errors: u64, requests: u64, max: f64) -> f64 {
    let k = errors.min(requests);
    log_mixture(k, requests, max, Side::Above, true).exp()
}

/// The always-valid p-value of an e-value: `min(1, 1 / e)`. Under the null it is at most
/// `alpha` at some judgement with probability at most `alpha`.
pub fn p_value_of(e_value: f64) -> f64 {
    if e_value <= 1.0 { 1.0 } else { 1.0 / e_value }
}

/// Bisection steps of the bounds: 2^-60 of the interval, far below any figure shown.
const BISECTION_STEPS: u32 = 60;

/// The error rate's lower confidence bound after `errors` of `requests`, valid at every
/// judgement at once: with probability at least `1 - alpha` the true rate is never below it.
/// Rates below it have a mixture e-value (alternatives above them, each weighted
/// `1 / GRID_LEN`) of at least `1 / alpha`.
///
/// That e-value falls as the rate rises towards `errors / requests` (every ratio falls, and
/// alternatives leave the mixture) and stays at most 1 beyond it, so the rates it rejects
/// form an interval from 0 and bisection finds its end. The result errs low (never
/// overstates the bound).
pub fn rate_lower_bound(errors: u64, requests: u64, alpha: f64) -> f64 {
    let k = errors.min(requests);
    if k == 0 {
        return 0.0;
    }
    let level = -alpha.ln();
    let rejected = |p: f64| log_mixture(k, requests, p, Side::Above, false) >= level;
    // `lo` is always rejected (p = 0 is, after an error), `hi` never.
    let (mut lo, mut hi) = (0.0, k as f64 / requests as f64);
    for _ in 0..BISECTION_STEPS {
        let mid = (lo + hi) / 2.0;
        if rejected(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The error rate's upper confidence bound after `errors` of `requests`, valid at every
/// judgement at once: with probability at least `1 - alpha` the true rate is never above it.
/// The mirror of [`rate_lower_bound`] (alternatives below the rate); errs high.
pub fn rate_upper_bound(errors: u64, requests: u64, alpha: f64) -> f64 {
    let k = errors.min(requests);
    if k == requests {
        return 1.0;
    }
    let level = -alpha.ln();
    let rejected = |p: f64| log_mixture(k, requests, p, Side::Below, false) >= level;
    // `lo` is never rejected, `hi` always (p = 1 is, after a success).
    let (mut lo, mut hi) = (k as f64 / requests as f64, 1.0);
    for _ in 0..BISECTION_STEPS {
        let mid = (lo + hi) / 2.0;
        if rejected(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_spans_small_and_large_rates_in_order() {
        let g: Vec<f64> = grid().collect();
        assert_eq!(g.len(), GRID_LEN);
        assert!((g[0] - 0.5).abs() < 1e-15);
        assert!(g[GRID_LOW as usize - 1] < 1e-4, "{g:?}");
        assert!((g[GRID_LEN - 1] - (1.0 - 1.0 / 128.0)).abs() < 1e-15);
        assert!(g.iter().all(|&q| q > 0.0 && q < 1.0));
    }

    #[test]
    fn e_values_by_counts() {
        // (errors, requests, max, lowest e, highest e): overwhelming evidence is ten of
        // fifteen against 2 %; three of ten is not yet; a rate at the max gives none.
        let table: &[(u64, u64, f64, f64, f64)] = &[
            (10, 15, 0.02, 1e10, f64::INFINITY),
            (6, 20, 0.02, 1e3, 1e6),
            (3, 10, 0.02, 1.0, 1e3),
            (2, 100, 0.02, 0.0, 1.0),
            (0, 50, 0.02, 0.0, 0.5),
            (0, 0, 0.02, 1.0, 1.0),
        ];
        for &(k, n, max, lo, hi) in table {
            let e = e_value_above(k, n, max);
            assert!((lo..=hi).contains(&e), "{k} of {n} against {max}: e = {e}");
        }
    }

    #[test]
    fn e_values_at_the_edges_of_the_rate() {
        assert_eq!(e_value_above(1, 10, 0.0), f64::INFINITY);
        assert!(e_value_above(0, 10, 0.0) < 1.0);
        assert_eq!(e_value_above(10, 10, 0.995), 0.0);
        // Errors are clamped to the requests.
        assert_eq!(e_value_above(20, 10, 0.1), e_value_above(10, 10, 0.1));
        assert_eq!(p_value_of(0.5), 1.0);
        assert_eq!(p_value_of(1_000.0), 0.001);
    }

    #[test]
    fn bounds_hold_the_observed_rate_and_tighten_with_data() {
        // (errors, requests): the bounds bracket the observed rate, and more of the same
        // rate narrows them.
        for &(k, n) in &[(1, 10), (3, 10), (30, 100), (300, 1_000), (0, 200), (5, 5)] {
            let rate = k as f64 / n as f64;
            let (lo, hi) = (rate_lower_bound(k, n, 0.001), rate_upper_bound(k, n, 0.001));
            assert!(lo <= rate && rate <= hi, "{k} of {n}: [{lo}, {hi}]");
        }
        let width = |k, n| rate_upper_bound(k, n, 0.001) - rate_lower_bound(k, n, 0.001);
        assert!(width(300, 1_000) < width(30, 100));
        assert!(width(30, 100) < width(3, 10));
        assert_eq!(rate_lower_bound(0, 50, 0.001), 0.0);
        assert_eq!(rate_upper_bound(5, 5, 0.001), 1.0);
        // Six of twenty: the rate is above 2 % beyond doubt, and below 80 %.
        let lo = rate_lower_bound(6, 20, 0.001);
        assert!((0.02..0.3).contains(&lo), "{lo}");
        assert!(rate_upper_bound(6, 20, 0.001) < 0.8);
        // No error in 1000: at most about 1 %.
        let hi = rate_upper_bound(0, 1_000, 0.001);
        assert!((0.005..0.015).contains(&hi), "{hi}");
    }

    #[test]
    fn a_bound_is_where_the_e_value_crosses_the_level() {
        let (k, n, alpha) = (6, 20, 0.001);
        let lo = rate_lower_bound(k, n, alpha);
        let at = |p| log_mixture(k, n, p, Side::Above, false);
        assert!(at(lo) >= -alpha.ln());
        assert!(at(lo + 1e-9) < -alpha.ln());
        let hi = rate_upper_bound(k, n, alpha);
        let at = |p| log_mixture(k, n, p, Side::Below, false);
        assert!(at(hi) >= -alpha.ln());
        assert!(at(hi - 1e-9) < -alpha.ln());
    }
}
