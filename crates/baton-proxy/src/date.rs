//! The `Date` header a response gets when the backend sent none (RFC 9110 6.6.1), formatted
//! at most once a second on each thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// IMF-fixdate, as in `Sun, 06 Nov 1994 08:49:37 GMT`: always this long.
const LEN: usize = 29;

thread_local! {
    /// The second it was formatted for, and the text.
    static CACHED: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// Calls `f` with the current date as a header value.
pub(crate) fn with<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            cached.1.copy_from_slice(&text.as_bytes()[..LEN]);
            cached.0 = second;
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_an_http_date_of_now() {
        let text = super::with(|d| String::from_utf8(d.to_vec()).unwrap());
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age.as_secs() < 5, "{text}");
    }
}
