//! Bearer-token authentication of operator calls, compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::state::AppState;

/// Proof that the request carries the operator token. Put it first among a handler's
/// extractors so a refused call reads (and changes) nothing.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.config.operator_token else {
            return Err(ApiError::Unauthorized(
                "the operator API is disabled: no operator token is configured",
            ));
        };
        let presented = bearer_token(parts).ok_or(ApiError::Unauthorized(
            "an operator bearer token is required",
        ))?;
        if tokens_match(presented, expected.expose()) {
            Ok(Operator)
        } else {
            Err(ApiError::Unauthorized("the bearer token is not valid"))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares digests so neither the length nor a prefix of the token leaks through timing.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("ab", "abc"));
        assert!(!tokens_match("", "abc"));
    }
}
