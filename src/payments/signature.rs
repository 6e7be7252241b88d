//! Webhook signatures (CONTRACT §7): `Livefund-Signature: t=<unix>,v1=<hex>[,v1=...]`,
//! HMAC-SHA256 over `"<t>.<raw body>"`, checked against every configured secret in
//! constant time, within ±300 s.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Secret, WebhookSecrets};

/// The header that carries the signature.
pub const HEADER: &str = "Livefund-Signature";
/// How far `t` may be from now, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Livefund-Signature header is missing")]
    Missing,
    #[error("the Livefund-Signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is more than 300 s from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value a sender puts on `body` at `now` (unix seconds).
pub fn sign(secret: &Secret, now: i64, body: &[u8]) -> String {
    let t = now.to_string();
    let digest = mac(secret, &t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(digest))
}

/// Verifies `header` over the raw `body` at `now` (unix seconds) against every secret.
/// Schemes other than `v1` are ignored; one valid `v1` is enough.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    // An empty segment (a trailing comma, two commas) is tolerated.
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" => timestamp = Some(value),
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    let at: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(at) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    if candidates.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    for secret in secrets.iter() {
        let expected = mac(secret, t, body);
        for candidate in &candidates {
            // verify_slice compares in constant time.
            if expected.clone().verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &str) -> WebhookSecrets {
        list.parse().expect("secrets")
    }

    const NOW: i64 = 1_780_000_000;

    #[test]
    fn a_signature_verifies_and_a_flipped_bit_does_not() {
        let s = secrets("whsec_a");
        let body = br#"{"event_id":"evt_1"}"#;
        let header = sign(s.signing(), NOW, body);
        assert_eq!(verify(Some(&header), body, &s, NOW), Ok(()));
        let mut flipped = body.to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            verify(Some(&header), &flipped, &s, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &secrets("whsec_b"), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn time_tolerance_is_300_seconds_each_way() {
        let s = secrets("whsec_a");
        let body = b"{}";
        for (skew, ok) in [
            (299, true),
            (-299, true),
            (300, true),
            (301, false),
            (-301, false),
        ] {
            let header = sign(s.signing(), NOW + skew, body);
            let result = verify(Some(&header), body, &s, NOW);
            assert_eq!(result.is_ok(), ok, "skew {skew}: {result:?}");
        }
    }

    #[test]
    fn several_v1_and_rotated_secrets() {
        let body = b"{}";
        let old = secrets("whsec_old");
        let new = secrets("whsec_new");
        let both = secrets("whsec_new,whsec_old");
        let signed_old = sign(old.signing(), NOW, body);
        assert_eq!(verify(Some(&signed_old), body, &both, NOW), Ok(()));
        let v1_new = sign(new.signing(), NOW, body);
        let v1_new = v1_new.split(",v1=").nth(1).expect("v1");
        let header = format!("{signed_old},v1={v1_new},v0=deadbeef");
        assert_eq!(verify(Some(&header), body, &new, NOW), Ok(()));
    }

    #[test]
    fn missing_malformed_and_unknown_schemes_are_refused() {
        let s = secrets("whsec_a");
        assert_eq!(verify(None, b"{}", &s, NOW), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("garbage"), b"{}", &s, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("v1=00"), b"{}", &s, NOW),
            Err(SignatureError::Malformed)
        );
        let only_v0 = format!("t={NOW},v0=abcdef");
        assert_eq!(
            verify(Some(&only_v0), b"{}", &s, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let s = secrets("whsec_a");
        for t in [i64::MIN, i64::MAX, -1] {
            let header = format!("t={t},v1=00");
            assert_eq!(
                verify(Some(&header), b"{}", &s, NOW),
                Err(SignatureError::Stale),
                "t={t}"
            );
        }
        let header = sign(s.signing(), i64::MIN, b"{}");
        assert_eq!(
            verify(Some(&header), b"{}", &s, i64::MAX),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn empty_segments_are_tolerated() {
        let s = secrets("whsec_a");
        let header = sign(s.signing(), NOW, b"{}");
        for tolerant in [
            format!("{header},"),
            format!(",{header}"),
            header.replace(',', ",, "),
        ] {
            assert_eq!(
                verify(Some(&tolerant), b"{}", &s, NOW),
                Ok(()),
                "{tolerant}"
            );
        }
    }
}
