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
