//! The timestamps the engine puts before each log line (`docker logs --timestamps`), read back
//! so that a re-adopted container's log continues exactly after the last line Baton wrote.

use std::time::{Duration, SystemTime};

/// Splits `line` into the time the engine stamped it with and the line itself. The engine writes
/// RFC 3339 with nanoseconds and one space, e.g. `2026-12-03T09:46:05.123456789Z hello\n`.
/// `None` if the line does not start with such a stamp.
pub(crate) fn split_timestamp(line: &[u8]) -> Option<(SystemTime, &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let stamp = std::str::from_utf8(&line[..space]).ok()?;
    Some((parse_rfc3339(stamp)?, &line[space + 1..]))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as a time; `None` for anything else or before 1970.
fn parse_rfc3339(stamp: &str) -> Option<SystemTime> {
    let (date, rest) = stamp.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let zone_at = rest.find(['Z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let secs = local - zone_offset(zone)?;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Seconds east of UTC for `Z` or `±HH:MM`.
fn zone_offset(zone: &str) -> Option<i64> {
    if zone == "Z" {
        return Some(0);
    }
    let (sign, hhmm) = zone.split_at(1);
    let (hours, minutes) = hhmm.split_once(':')?;
    let offset = hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60;
    match sign {
        "+" => Some(offset),
        "-" => Some(-offset),
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn reads_the_engines_stamps() {
        let (time, rest) = split_timestamp(b"2026-12-03T09:46:05.123456789Z hello\n").unwrap();
        assert_eq!(time, at(1_796_291_165, 123_456_789));
        assert_eq!(rest, b"hello\n");
        let (time, rest) = split_timestamp(b"1970-01-01T00:00:00Z x").unwrap();
        assert_eq!((time, rest), (at(0, 0), &b"x"[..]));
        let (time, _) = split_timestamp(b"2000-02-29T23:59:59.5Z ").unwrap();
        assert_eq!(time, at(951_868_799, 500_000_000));
    }

    #[test]
    fn offsets_are_east_of_utc() {
        let (utc, _) = split_timestamp(b"2026-12-03T09:46:05.000000001Z a").unwrap();
        let (east, _) = split_timestamp(b"2026-12-03T10:46:05.000000001+01:00 a").unwrap();
        let (west, _) = split_timestamp(b"2026-12-03T04:16:05.000000001-05:30 a").unwrap();
        assert_eq!(utc, east);
        assert_eq!(utc, west);
    }

    #[test]
    fn lines_without_a_stamp_are_refused() {
        for line in [
            &b"hello world"[..],
            b"2026-12-03 hello",
            b"2026-13-03T09:46:05Z x",
            b"2026-12-03T09:46:05.1234567890Z x",
            b"2026-12-03T09:46:05 x",
            b"2026-12-03T09:46:05.12a4Z x",
            b"",
        ] {
            assert_eq!(
                split_timestamp(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
