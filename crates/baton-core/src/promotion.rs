//! Promotion gates: a release may enter an environment only after it ran healthy in the
//! previous one for the soak time. Pure: decided from the previous environment's deployments.

use crate::duration::Duration;
use crate::model::{Deployment, Millis, Phase};

/// How long `release` has served in an environment, from its deployments (any order): the
/// longest stretch from a deployment of it that succeeded to the next one that replaced it
/// (or to `now` if it still serves). None if it never served there.
pub fn served_for(deployments: &[Deployment], release: &str, now: Millis) -> Option<Millis> {
    let mut ended: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.phase == Phase::Succeeded && d.finished_at.is_some())
        .collect();
    ended.sort_by_key(|d| d.finished_at);
    let mut best: Option<Millis> = None;
    for (i, d) in ended.iter().enumerate() {
        if d.to != release {
            continue;
        }
        let start = d.finished_at.expect("filtered");
        let end = ended
            .get(i + 1)
            .and_then(|next| next.finished_at)
            .unwrap_or(now);
        let span = (end - start).max(0);
        best = Some(best.map_or(span, |b| b.max(span)));
    }
    best
}

/// Why a release may not enter an environment yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    /// It never served in the previous environment.
    #[error(
        "{app} {release} has not run in {previous} yet: deploy it there first (`baton deploy {app} {release} --env {previous}`), or pass --force (recorded)"
    )]
    NeverRan {
        /// The app.
        app: String,
        /// The release.
        release: String,
        /// The previous environment.
        previous: String,
    },
    /// It served there, but not for the soak time yet.
    #[error(
        "{app} {release} has run in {previous} for {served} of the {soak} soak; it may enter {env} in {left} (or pass --force, recorded)"
    )]
    NotSoaked {
        /// The app.
        app: String,
        /// The release.
        release: String,
        /// The previous environment.
        previous: String,
        /// The environment asked for.
        env: String,
        /// How long it served.
        served: Duration,
        /// The soak time.
        soak: Duration,
        /// What is left.
        left: Duration,
    },
}

/// Checks that `release` of `app` served in `previous` for `soak` before entering `env`.
// The refusal carries its figures for the message; it is built once per API call, never on a
// hot path, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn check(
    app: &str,
    release: &str,
    env: &str,
    previous: &str,
    previous_deployments: &[Deployment],
    soak: Duration,
    now: Millis,
) -> Result<(), GateRefusal> {
    let served =
        served_for(previous_deployments, release, now).ok_or_else(|| GateRefusal::NeverRan {
            app: app.to_string(),
            release: release.to_string(),
            previous: previous.to_string(),
        })?;
    let soak_ms = soak.as_millis_i64();
    if served >= soak_ms {
        return Ok(());
    }
    let round = |ms: i64| Duration::from_secs((ms.max(0) as u64).div_ceil(1000));
    Err(GateRefusal::NotSoaked {
        app: app.to_string(),
        release: release.to_string(),
        previous: previous.to_string(),
        env: env.to_string(),
        served: Duration::from_secs(served.max(0) as u64 / 1000),
        soak,
        left: round(soak_ms - served),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Strategy;

    fn d(to: &str, phase: Phase, finished: Millis) -> Deployment {
        Deployment {
            id: finished,
            app: "web@staging".into(),
            from: None,
            to: to.into(),
            strategy: Strategy::Rolling,
            phase,
            step: 0,
            reason: None,
            trigger: "deploy".into(),
            created_at: finished - 10,
            updated_at: finished,
            finished_at: Some(finished),
            exposed: true,
            deadline: None,
            weight: 0,
            pause_until: None,
            intents: Default::default(),
            migration: Default::default(),
            hold: Default::default(),
        }
    }

    const SOAK: Duration = Duration::from_secs(600);

    #[test]
    fn a_release_still_serving_soaks_until_now() {
        let history = [
            d("1.0.0", Phase::Succeeded, 1_000),
            d("1.1.0", Phase::Succeeded, 5_000),
        ];
        assert_eq!(served_for(&history, "1.1.0", 605_000), Some(600_000));
        assert!(
            check(
                "web",
                "1.1.0",
                "production",
                "staging",
                &history,
                SOAK,
                605_000
            )
            .is_ok()
        );
        let e = check(
            "web",
            "1.1.0",
            "production",
            "staging",
            &history,
            SOAK,
            65_000,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "web 1.1.0 has run in staging for 1m of the 10m soak; it may enter production in 9m (or pass --force, recorded)"
        );
    }

    #[test]
    fn a_replaced_release_counts_only_while_it_served_and_failures_do_not_replace() {
        let history = [
            d("1.0.0", Phase::Succeeded, 0),
            d("1.1.0", Phase::RolledBack, 100_000),
            d("1.2.0", Phase::Succeeded, 200_000),
        ];
        assert_eq!(
            served_for(&history, "1.0.0", 10_000_000),
            Some(200_000),
            "until 1.2.0 replaced it"
        );
        assert_eq!(
            served_for(&history, "1.1.0", 10_000_000),
            None,
            "a rolled-back release never served"
        );
        let e = check(
            "web",
            "1.1.0",
            "production",
            "staging",
            &history,
            SOAK,
            10_000_000,
        )
        .unwrap_err();
        assert!(matches!(e, GateRefusal::NeverRan { .. }));
        assert!(
            e.to_string()
                .contains("baton deploy web 1.1.0 --env staging")
        );
    }
}
