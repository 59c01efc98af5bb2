//! The sticky bucket: a fixed, documented, salted hash of a user key to 0..9999.
//!
//! A user key (a cookie, a header, a user id) maps to one of [`BUCKETS`] buckets, and a
//! release at weight `w` % takes the buckets below `w * 100`. So a user stays on the same
//! release while the weight holds, raising the weight only moves more users to the canary,
//! and lowering it only moves some back. The salt (e.g. the app and deployment) reshuffles
//! who is first in line from one rollout to the next.
//!
//! The hash is part of the contract (proxies of different versions must agree), so it is
//! frozen by test vectors: 64-bit FNV-1a over the bytes of `salt`, one `0xFF` separator byte
//! (which never occurs in UTF-8, so `("ab", "c")` and `("a", "bc")` differ), and the bytes of
//! `key`; then the MurmurHash3 `fmix64` finalizer, because FNV-1a's low bits depend only on
//! the low bits of the input bytes; then `h % 10000`. The modulo bias is below 1e-15 per
//! bucket.

/// Number of sticky buckets: a weight has a resolution of 0.01 %.
pub const BUCKETS: u16 = 10_000;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The bucket, in `0..10000`, of `key` under `salt`.
pub fn bucket(salt: &str, key: &str) -> u16 {
    let bytes = salt.bytes().chain([0xFF]).chain(key.bytes());
    let h = bytes.fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    (fmix64(h) % u64::from(BUCKETS)) as u16
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether a key in `bucket` goes to a release that has `weight_percent` % of the traffic:
/// `bucket < round(weight_percent * 100)`. Monotonic in the weight: every bucket inside at
/// some weight is inside at any higher one. A weight at or below 0 (or NaN) takes no bucket,
/// at or above 100 takes all.
pub fn in_canary(bucket: u16, weight_percent: f64) -> bool {
    let cut = (weight_percent * 100.0).round();
    // NaN fails the comparison below, so it takes no bucket.
    cut > 0.0 && f64::from(bucket) < cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_frozen() {
        // Computed once, by an independent Python implementation of the same definition; a change here moves users between
        // releases mid-rollout on a mixed fleet, so it must never change.
        let vectors = [
            ("", "", 2_295),
            ("web", "user-1", 1_660),
            ("web", "user-2", 6_549),
            ("web/42", "alice@example.com", 977),
            ("api", "9f86d081884c7d65", 1_303),
            ("web", "ünïcødé", 5_241),
        ];
        for (salt, key, want) in vectors {
            assert_eq!(bucket(salt, key), want, "bucket({salt:?}, {key:?})");
        }
    }

    #[test]
    fn salt_and_key_do_not_run_together() {
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        assert_ne!(bucket("web", "user-1"), bucket("api", "user-1"));
    }

    #[test]
    fn buckets_are_roughly_uniform() {
        let mut bins = [0u32; 10];
        for i in 0..10_000 {
            let b = bucket("web", &format!("user-{i}"));
            assert!(b < BUCKETS);
            bins[usize::from(b / 1_000)] += 1;
        }
        // Each bin expects 1000 with a standard deviation of 30: allow five of them.
        for (i, n) in bins.iter().enumerate() {
            assert!((850..=1_150).contains(n), "bin {i} has {n} keys: {bins:?}");
        }
        // The 1 % canary gets about 1 % of users.
        let canary = (0..10_000)
            .filter(|i| in_canary(bucket("s", &i.to_string()), 1.0))
            .count();
        assert!((60..=140).contains(&canary), "{canary}");
    }

    #[test]
    fn raising_the_weight_only_adds_users() {
        let weights = [0.0, 0.01, 0.07, 1.0, 5.0, 12.5, 33.33, 50.0, 99.99, 100.0];
        for b in [0, 1, 6, 7, 99, 100, 499, 500, 3_332, 3_333, 9_998, 9_999] {
            let inside: Vec<bool> = weights.iter().map(|&w| in_canary(b, w)).collect();
            assert!(
                inside.windows(2).all(|w| w[0] <= w[1]),
                "bucket {b}: {inside:?}"
            );
        }
        assert!(in_canary(0, 0.01) && !in_canary(1, 0.01));
        assert!(in_canary(6, 0.07) && !in_canary(7, 0.07));
        assert!(in_canary(499, 5.0) && !in_canary(500, 5.0));
        assert!(in_canary(9_999, 100.0) && in_canary(9_999, 250.0));
        assert!(!in_canary(0, 0.0) && !in_canary(0, -3.0) && !in_canary(0, f64::NAN));
    }

    #[test]
    fn every_bucket_is_in_at_exactly_its_weight() {
        let inside = (0..BUCKETS).filter(|&b| in_canary(b, 5.0)).count();
        assert_eq!(inside, 500);
    }
}
