//! Outlier ejection decisions: when an instance that keeps failing leaves the split for a
//! while, for how long, and how many of a release's instances may be out at once (Envoy's).

use crate::config::OutlierConfig;

/// How long the `ejections`-th ejection (from 1) of an instance lasts: `base_ejection` times
/// `ejections`, never more than `max_ejection`.
pub fn ejection_ms(config: &OutlierConfig, ejections: u32) -> u64 {
    config
        .base_ejection
        .as_millis()
        .saturating_mul(u64::from(ejections.max(1)))
        .min(config.max_ejection.as_millis())
}

/// How many of an instance's `ejections` still count at `now_ms` (unix ms), its last one having
/// ended at `ended_ms`: one is forgotten for every whole `base_ejection` since, so an instance
/// that fails once a day is not held out for `max_ejection` forever (Envoy decrements its
/// multiplier the same way while a host stays in).
pub fn remembered_ejections(
    config: &OutlierConfig,
    ejections: u32,
    ended_ms: i64,
    now_ms: i64,
) -> u32 {
    let base = config.base_ejection.as_millis().max(1);
    let quiet = u64::try_from(now_ms.saturating_sub(ended_ms)).unwrap_or(0);
    let forgotten = u32::try_from(quiet / base).unwrap_or(u32::MAX);
    ejections.saturating_sub(forgotten)
}

/// Whether one more of a release's `total` instances may be ejected while `ejected` already
/// are: at most `max_ejection_percent` of them (rounded down), and never every one.
pub fn may_eject(config: &OutlierConfig, ejected: usize, total: usize) -> bool {
    let after = ejected + 1;
    after < total && after * 100 <= total * config.max_ejection_percent as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Duration;

    fn config(percent: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_errors: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(100),
            max_ejection_percent: percent,
        }
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_the_max() {
        let c = config(50);
        let table = [
            (0, 30_000),
            (1, 30_000),
            (2, 60_000),
            (3, 90_000),
            (4, 100_000),
            (99, 100_000),
        ];
        for (n, ms) in table {
            assert_eq!(ejection_ms(&c, n), ms, "{n}");
        }
    }

    #[test]
    fn ejections_are_forgotten_one_per_base_ejection_in_service() {
        let c = config(50);
        // (ejections, ended at, now, still counted)
        let table = [
            (3, 1_000, 500, 3),     // not over yet
            (3, 1_000, 1_000, 3),   // just over
            (3, 1_000, 30_999, 3),  // less than one base_ejection since
            (3, 1_000, 31_000, 2),  // one
            (3, 1_000, 61_000, 1),  // two
            (3, 1_000, 900_000, 0), // long since
            (0, 1_000, 900_000, 0),
        ];
        for (n, ended, now, left) in table {
            assert_eq!(
                remembered_ejections(&c, n, ended, now),
                left,
                "{n} {ended} {now}"
            );
        }
        // So the next ejection after a long healthy stretch is a short one again.
        assert_eq!(
            ejection_ms(&c, remembered_ejections(&c, 4, 0, 1_000_000) + 1),
            30_000
        );
    }

    #[test]
    fn never_more_than_the_percentage_nor_every_instance() {
        // (percent, already ejected, instances, may eject one more)
        let table = [
            (50, 0, 3, true),
            (50, 1, 3, false),
            (50, 0, 1, false),
            (100, 0, 1, false),
            (100, 1, 2, false),
            (100, 2, 4, true),
            (10, 0, 5, false),
            (10, 0, 10, true),
            (34, 0, 3, true),
        ];
        for (percent, ejected, total, may) in table {
            assert_eq!(
                may_eject(&config(percent), ejected, total),
                may,
                "{percent} {ejected} {total}"
            );
        }
    }
}
