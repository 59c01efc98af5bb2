//! Join tokens: `BATON-JOIN-1.<CA fingerprint>.<token id>.<secret>`, all hex. The fingerprint
//! lets a new host verify the controller before it trusts it with anything; the id names the
//! stored token; the secret (32 random bytes) proves the holder was given it. The controller
//! stores only the secret's sha256.

use std::fmt;

use crate::fingerprint::{Fingerprint, from_hex, hex, random_bytes, sha256_hex};

/// The prefix and format version of a join token.
pub const TOKEN_PREFIX: &str = "BATON-JOIN-1";
/// Bytes of a token id.
const ID_BYTES: usize = 8;
/// Bytes of a token secret.
const SECRET_BYTES: usize = 32;

/// A join token. Its `Debug` and `Display` never show the secret: only [`JoinToken::reveal`]
/// does, for the one time it is printed to the operator.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The sha256 of the cluster CA certificate the controller must present.
    pub ca: Fingerprint,
    /// The token's id (16 hex digits), under which the controller stores it.
    pub id: String,
    secret: [u8; SECRET_BYTES],
}

/// Why a token string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a join token: {0}; a token looks like BATON-JOIN-1.<64 hex>.<16 hex>.<64 hex>, as `baton host token` prints it"
)]
pub struct TokenParseError(&'static str);

impl JoinToken {
    /// A new token for the cluster whose CA has fingerprint `ca`, with a fresh id and secret.
    pub fn generate(ca: Fingerprint) -> JoinToken {
        JoinToken {
            ca,
            id: hex(&random_bytes::<ID_BYTES>()),
            secret: random_bytes(),
        }
    }

    /// Parses a token as printed by [`JoinToken::reveal`]; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<JoinToken, TokenParseError> {
        let mut parts = s.trim().split('.');
        if parts.next() != Some(TOKEN_PREFIX) {
            return Err(TokenParseError("it does not start with BATON-JOIN-1"));
        }
        let (Some(ca), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenParseError(
                "it does not have four parts separated by '.'",
            ));
        };
        let ca = Fingerprint::from_hex(ca)
            .ok_or(TokenParseError("the CA fingerprint is not 64 hex digits"))?;
        let id_ok = id.len() == ID_BYTES * 2 && from_hex(id).is_some();
        if !id_ok {
            return Err(TokenParseError("the token id is not 16 hex digits"));
        }
        let secret = from_hex(secret)
            .and_then(|b| <[u8; SECRET_BYTES]>::try_from(b).ok())
            .ok_or(TokenParseError("the secret is not 64 hex digits"))?;
        Ok(JoinToken {
            ca,
            id: id.to_ascii_lowercase(),
            secret,
        })
    }

    /// The whole token, secret included: print it once, to the operator who asked for it.
    pub fn reveal(&self) -> String {
        format!(
            "{TOKEN_PREFIX}.{}.{}.{}",
            self.ca,
            self.id,
            hex(&self.secret)
        )
    }

    /// The hex sha256 of the secret: what the controller stores and compares.
    pub fn secret_hash(&self) -> String {
        sha256_hex(&self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({self})")
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}.{}.{}.<secret>", self.ca, self.id)
    }
}

/// Whether two hex digests are equal, in time that does not depend on where they differ.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_never_shows_its_secret_unless_revealed() {
        let t = JoinToken::generate(Fingerprint::of(b"ca"));
        let text = t.reveal();
        assert_eq!(JoinToken::parse(&format!(" {text}\n")).unwrap(), t);
        let secret = text.rsplit('.').next().unwrap();
        assert_eq!(secret.len(), 64);
        assert!(!format!("{t} {t:?}").contains(secret));
        assert_eq!(t.secret_hash(), sha256_hex(&from_hex(secret).unwrap()));
        assert_ne!(JoinToken::generate(t.ca).reveal(), text);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let good = JoinToken::generate(Fingerprint::of(b"ca")).reveal();
        let parts: Vec<&str> = good.split('.').collect();
        let with = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            p.join(".")
        };
        let cases = [
            (with(0, "BATON-JOIN-2"), "start with"),
            (format!("{good}.x"), "four parts"),
            (parts[..3].join("."), "four parts"),
            (with(1, "abc"), "CA fingerprint"),
            (with(2, "zzzzzzzzzzzzzzzz"), "token id"),
            (with(2, "00"), "token id"),
            (with(3, &parts[3][..62]), "secret"),
        ];
        for (text, says) in cases {
            let e = JoinToken::parse(&text).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("baton host token"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn digests_compare_by_value() {
        assert!(digests_equal("ab", "ab"));
        assert!(!digests_equal("ab", "ac"));
        assert!(!digests_equal("ab", "abc"));
    }
}
