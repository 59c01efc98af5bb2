//! A judgement's result: one check per criterion with its figures, and the overall verdict.

use serde::{Deserialize, Serialize};

/// The result of a check, or of a whole judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The canary meets the criterion.
    Pass,
    /// The canary misses the criterion, beyond noise.
    Fail,
    /// Too little data, or an excess not (yet) beyond noise; the step's `on_inconclusive`
    /// decides what happens.
    Inconclusive,
}

impl Outcome {
    /// The outcome's name: `pass`, `fail` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// One criterion judged, with the figures that justify the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked: `error_rate`, `p99`, `compare.errors`, `compare.latency` or
    /// `metric.<name>`.
    pub name: String,
    /// The check's outcome.
    pub outcome: Outcome,
    /// The observed figure compared with `threshold` (a rate, microseconds, a difference, a
    /// ratio or a metric value), when there was one to observe.
    pub observed: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// The p-value of the statistical test, when one ran. For a sequential test (the error
    /// checks) it is the always-valid one, `min(1, 1 / e_value)`.
    pub p_value: Option<f64>,
    /// The e-value of a sequential test, when one ran: the evidence against the criterion
    /// being met, which fails the check on reaching `1 / (1 - confidence)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_value: Option<f64>,
    /// The canary's requests or latency samples the check saw.
    pub samples: u64,
    /// One line for people, with the numbers.
    pub detail: String,
}

/// The verdict of one judgement: the overall outcome and every check behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `Fail` if any check failed; else `Inconclusive` if any was; else `Pass`.
    pub outcome: Outcome,
    /// Every check, in the order the criteria list them.
    pub checks: Vec<Check>,
    /// One line naming the checks that decided the outcome, with their numbers.
    pub summary: String,
}

// === impl Verdict ===

impl Verdict {
    /// The verdict of these checks: any fail fails, else any inconclusive is inconclusive,
    /// else it passes (also when there are no checks at all).
    pub fn from_checks(checks: Vec<Check>) -> Self {
        let outcome = if checks.iter().any(|c| c.outcome == Outcome::Fail) {
            Outcome::Fail
        } else if checks.iter().any(|c| c.outcome == Outcome::Inconclusive) {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        };
        let summary = if checks.is_empty() {
            "pass: no checks configured".to_string()
        } else {
            let deciding: Vec<String> = checks
                .iter()
                .filter(|c| outcome == Outcome::Pass || c.outcome == outcome)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            format!("{}: {}", outcome.as_str(), deciding.join("; "))
        };
        Self {
            outcome,
            checks,
            summary,
        }
    }

    /// The checks with this outcome.
    pub fn checks_with(&self, outcome: Outcome) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.outcome == outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, outcome: Outcome) -> Check {
        Check {
            name: name.into(),
            outcome,
            observed: Some(0.3),
            threshold: Some(0.05),
            p_value: None,
            e_value: None,
            samples: 50,
            detail: format!("{name} figures"),
        }
    }

    #[test]
    fn any_fail_fails_then_any_inconclusive_then_pass() {
        use Outcome::*;
        let v = |outcomes: &[Outcome]| {
            let checks = outcomes
                .iter()
                .enumerate()
                .map(|(i, &o)| check(&format!("c{i}"), o));
            Verdict::from_checks(checks.collect()).outcome
        };
        assert_eq!(v(&[Pass, Inconclusive, Fail]), Fail);
        assert_eq!(v(&[Pass, Inconclusive]), Inconclusive);
        assert_eq!(v(&[Pass, Pass]), Pass);
        assert_eq!(v(&[]), Pass);
    }

    #[test]
    fn the_summary_names_the_deciding_checks() {
        let checks = vec![
            check("p99", Outcome::Pass),
            check("error_rate", Outcome::Fail),
            check("compare.latency", Outcome::Inconclusive),
        ];
        let v = Verdict::from_checks(checks);
        assert_eq!(v.summary, "fail: error_rate: error_rate figures");
        assert_eq!(v.checks_with(Outcome::Fail).count(), 1);
        let v = Verdict::from_checks(vec![check("p99", Outcome::Pass)]);
        assert_eq!(v.summary, "pass: p99: p99 figures");
        assert_eq!(
            Verdict::from_checks(vec![]).summary,
            "pass: no checks configured"
        );
    }

    #[test]
    fn verdicts_round_trip_through_json() {
        let v = Verdict::from_checks(vec![check("error_rate", Outcome::Fail)]);
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""outcome":"fail""#), "{json}");
        assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), v);
    }
}
