//! Human durations in config and on the command line: `"500ms"`, `"30s"`, `"2m"`, `"1h"`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written as a number and a unit (`ms`, `s`, `m`, `h`), at most
/// [`Duration::MAX`] (10 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number and a unit.
    #[error(
        "invalid duration {input:?}: expected a whole number followed by ms, s, m or h (e.g. \"500ms\", \"30s\", \"2m\")"
    )]
    Syntax {
        /// What was written.
        input: String,
    },
    /// Longer than [`Duration::MAX`].
    #[error("duration {input:?} is too long: the longest allowed is 87600h (10 years)")]
    TooLong {
        /// What was written.
        input: String,
    },
}

impl Duration {
    /// The longest duration accepted from text: 10 years. Every deadline Baton computes is
    /// `now + d` in milliseconds as `i64` (and `Instant + d` in tokio), which this keeps far
    /// from overflowing; anything longer is a typo or a unit mix-up.
    pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// Whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }

    /// Whole milliseconds as the `i64` that timestamps use; saturates (cannot happen below
    /// [`Duration::MAX`]) instead of wrapping negative.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// The standard-library duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError::Syntax {
            input: s.to_string(),
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = t.split_at(split);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(err()),
        };
        if num.is_empty() {
            return Err(err());
        }
        // Only digits remain: a number that does not fit a u64 is too long, not malformed.
        let ms = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .filter(|&ms| ms <= Self::MAX.as_millis())
            .ok_or_else(|| DurationError::TooLong {
                input: s.to_string(),
            })?;
        Ok(Self::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("500ms".parse::<Duration>().unwrap().as_millis(), 500);
        assert_eq!("30s".parse::<Duration>().unwrap().as_millis(), 30_000);
        assert_eq!("2m".parse::<Duration>().unwrap().as_millis(), 120_000);
        assert_eq!("1h".parse::<Duration>().unwrap().as_millis(), 3_600_000);
        assert_eq!("0s".parse::<Duration>().unwrap().as_millis(), 0);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "5", "s", "1.5s", "-1s", "10 parsecs", "5d", "ms"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn refuses_more_than_ten_years_and_never_wraps() {
        assert_eq!("87600h".parse::<Duration>().unwrap(), Duration::MAX);
        assert_eq!(
            "315360000000ms"
                .parse::<Duration>()
                .unwrap()
                .as_millis_i64(),
            315_360_000_000
        );
        for long in [
            "87601h",
            "315360000001ms",
            "18446744073709551615ms",
            "9223372036854775808ms",
            "18446744073709551615h",
            "99999999999999999999999s",
        ] {
            let e = long.parse::<Duration>().unwrap_err();
            assert!(matches!(e, DurationError::TooLong { .. }), "{long}: {e}");
            assert!(e.to_string().contains(long), "{e}");
        }
        assert_eq!(Duration::from_millis(u64::MAX).as_millis_i64(), i64::MAX);
    }

    #[test]
    fn displays_round_trip() {
        for s in ["500ms", "30s", "2m", "1h", "1500ms", "0s"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
    }
}
