//! Signed URLs: a publish or play carries `expires=<unix seconds>` and
//! `sign=<hex>` in its query, where `sign` is the lowercase hex
//! HMAC-SHA256, with the shared secret, of `<action>:<vhost>/<app>/<stream>:<expires>`
//! and `action` is `publish` or `play`. Checked locally, with a constant-time
//! compare, so a CDN can cache what a signature admits and an edge can check
//! it without calling anyone.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Query parameter of the expiry (Unix seconds).
pub const EXPIRES: &str = "expires";
/// Query parameter of the signature (lowercase hex).
pub const SIGN: &str = "sign";

fn mac(secret: &[u8], action: &str, key: &str, expires: u64) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(action.as_bytes());
    m.update(b":");
    m.update(key.as_bytes());
    m.update(b":");
    m.update(expires.to_string().as_bytes());
    m
}

/// The signature of `action` on stream `key` (`vhost/app/stream`) until
/// `expires`, as lowercase hex.
pub fn sign(secret: &[u8], action: &str, key: &str, expires: u64) -> String {
    let digest = mac(secret, action, key, expires).finalize().into_bytes();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `expires=<expires>&sign=<hex>`, the query a signed URL carries.
pub fn signed_query(secret: &[u8], action: &str, key: &str, expires: u64) -> String {
    format!(
        "{EXPIRES}={expires}&{SIGN}={}",
        sign(secret, action, key, expires)
    )
}

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The request carries no `expires` or no `sign`.
    Missing,
    /// `expires` is not a number of seconds.
    BadExpires(String),
    /// `sign` is not 64 hex digits.
    BadHex,
    /// The signature expired (`expires` + the allowed skew is before now).
    Expired {
        /// When it expired.
        expires: u64,
        /// Now, Unix seconds.
        now: u64,
    },
    /// The signature does not match this action on this stream.
    Mismatch,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Missing => write!(f, "no signature: the URL needs {EXPIRES}= and {SIGN}="),
            SignError::BadExpires(v) => write!(f, "{EXPIRES}={v:?} is not Unix seconds"),
            SignError::BadHex => write!(f, "{SIGN}= is not 64 lowercase hex digits"),
            SignError::Expired { expires, now } => {
                write!(f, "signature expired at {expires} (now {now})")
            }
            SignError::Mismatch => f.write_str("signature does not match this action and stream"),
        }
    }
}

impl std::error::Error for SignError {}

/// Checks the signature in `query` for `action` on `key` at `now` (Unix
/// seconds), allowing `skew_s` of clock difference past `expires`.
pub fn verify(
    secret: &[u8],
    action: &str,
    key: &str,
    query: &[(String, String)],
    now: u64,
    skew_s: u64,
) -> Result<(), SignError> {
    let (Some(expires), Some(given)) = (
        crate::query::param(query, EXPIRES),
        crate::query::param(query, SIGN),
    ) else {
        return Err(SignError::Missing);
    };
    let expires_s: u64 = expires
        .parse()
        .map_err(|_| SignError::BadExpires(expires.to_string()))?;
    let given = decode_hex(given).ok_or(SignError::BadHex)?;
    if expires_s.saturating_add(skew_s) < now {
        return Err(SignError::Expired {
            expires: expires_s,
            now,
        });
    }
    // `verify_slice` compares in constant time.
    mac(secret, action, key, expires_s)
        .verify_slice(&given)
        .map_err(|_| SignError::Mismatch)
}

/// 64 lowercase hex digits as 32 bytes.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "__defaultVhost__/live/test";

    fn q(expires: &str, sign: &str) -> Vec<(String, String)> {
        vec![
            ("expires".into(), expires.into()),
            ("sign".into(), sign.into()),
        ]
    }

    /// Vectors computed independently (Python's hmac module).
    #[test]
    fn signatures_match_an_independent_hmac() {
        assert_eq!(
            sign(b"topsecret", "play", KEY, 1_800_000_000),
            "9ff85e8e15e9ca20fe5e795591e03879b3fddeeb841f26c50f50ca3d07b4b3c2"
        );
        assert_eq!(
            signed_query(b"topsecret", "publish", KEY, 1_800_000_000),
            "expires=1800000000&sign=80f0eb243ca39b8a2f0cba71a47d3ed32c3825c351708f7fd8cdb904c80569b9"
        );
    }

    #[test]
    fn good_expired_tampered_and_wrong_signatures() {
        let s = sign(b"k", "play", KEY, 1000);
        let ok = |query: &[(String, String)], now| verify(b"k", "play", KEY, query, now, 30);
        assert_eq!(ok(&q("1000", &s), 900), Ok(()));
        assert_eq!(ok(&q("1000", &s), 1030), Ok(()), "within the skew");
        assert_eq!(
            ok(&q("1000", &s), 1031),
            Err(SignError::Expired {
                expires: 1000,
                now: 1031
            })
        );
        assert_eq!(
            ok(&q("1001", &s), 900),
            Err(SignError::Mismatch),
            "expiry changed"
        );
        let mut flipped = s.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(ok(&q("1000", &flipped), 900), Err(SignError::Mismatch));
        assert_eq!(
            verify(b"k", "publish", KEY, &q("1000", &s), 900, 30),
            Err(SignError::Mismatch),
            "a play signature does not publish"
        );
        assert_eq!(
            verify(
                b"k",
                "play",
                "__defaultVhost__/live/other",
                &q("1000", &s),
                900,
                30
            ),
            Err(SignError::Mismatch),
            "nor play another stream"
        );
        assert_eq!(
            verify(b"other", "play", KEY, &q("1000", &s), 900, 30),
            Err(SignError::Mismatch)
        );
        assert_eq!(ok(&[], 900), Err(SignError::Missing));
        assert_eq!(
            ok(&q("soon", &s), 900),
            Err(SignError::BadExpires("soon".into()))
        );
        assert_eq!(
            ok(&q("1000", &s.to_uppercase()), 900),
            Err(SignError::BadHex)
        );
        assert_eq!(ok(&q("1000", &s[..62]), 900), Err(SignError::BadHex));
    }
}
