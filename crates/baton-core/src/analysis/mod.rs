//! Canary analysis: pure judges that turn windows of per-release metrics into verdicts.
//!
//! Each analysis interval the controller hands [`judge`] the canary's and the stable
//! release's [`Window`] (same step window, same traffic), the canary's app
//! [`MetricReading`]s and the step's [`Criteria`]. The judge returns a [`Verdict`]: pass,
//! fail or inconclusive, with one [`Check`] per criterion carrying the figures (counts,
//! rates, p-values, thresholds) that justify it, so the verdict can be stored as JSON and
//! shown by `baton analysis`.
//!
//! Three kinds of check:
//! - *sequential* checks of errors, valid however often the growing window is judged
//!   ([`sequential`]): they fail as soon as the evidence is overwhelming, before
//!   `min_requests` too, and a healthy canary fails each of them at some judgement of a step
//!   with probability at most `1 - confidence`:
//!   - the error rate fails when the e-value (a mixture likelihood ratio) against "the rate
//!     is at most `max_error_rate`" reaches `1 / (1 - confidence)`;
//!   - the comparison of errors fails when the canary's always-valid lower bound is more than
//!     `min_error_diff` above the stable's always-valid upper bound;
//! - *absolute* checks of latency and app metrics (p99, metric ranges), judged once the
//!   canary has `min_requests`; p99 fails when the excess over the threshold is beyond noise
//!   (an exact one-sided binomial test at `confidence`);
//! - the *comparison* of latency with the stable release over the same window, with the
//!   minimum effect inside the tested hypothesis (Kayenta's approach, made strict so that a
//!   rollout judged every few seconds raises no false alarm): it fails when a one-sided
//!   Mann-Whitney U test on the histograms (a bucket is a tie group) says the canary is slower
//!   than `min_latency_ratio` times the stable and by more than `min_latency_increase` at
//!   `confidence`, and its typical latency (geometric mean) is at least that ratio and that
//!   increase above the stable's.
//!
//! A pass always needs `min_requests`; too little data is [`Outcome::Inconclusive`], never a
//! silent pass.

mod criteria;
mod figures;
mod judge;
pub mod sequential;
pub mod stats;
mod verdict;
mod window;

#[cfg(test)]
mod judge_tests;
#[cfg(test)]
mod simulation;

pub use criteria::{
    Criteria, CriteriaError, DEFAULT_CONFIDENCE, DEFAULT_MIN_ERROR_DIFF,
    DEFAULT_MIN_LATENCY_INCREASE_US, DEFAULT_MIN_LATENCY_RATIO, DEFAULT_MIN_REQUESTS, MetricKind,
    MetricRule,
};
pub use judge::{
    CHECK_COMPARE_ERRORS, CHECK_COMPARE_LATENCY, CHECK_ERROR_RATE, CHECK_METRIC_PREFIX, CHECK_P99,
    P99_ALLOWED_EXCEEDANCE, judge,
};
pub use verdict::{Check, Outcome, Verdict};
pub use window::{Bucket, MetricReading, Window};
