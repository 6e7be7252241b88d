//! A JSON body extractor whose failures speak the contract: 400 `invalid_request`
//! naming the field, 413 `payload_too_large` past the body limit.
//!
//! It reads the body whatever its content type, so `curl -d` works as operators expect.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct Json<T>(pub T);

/// The raw request body (for signatures), with the same limit and errors as [`Json`].
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(req, state).await.map(RawBody)
    }
}

async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: BODY_LIMIT }
        } else {
            ApiError::BadRequest {
                message: format!("could not read the request body: {rejection}"),
                field: None,
            }
        }
    })
}

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(&read(req, state).await?).map(Json)
    }
}

/// Parses a JSON body, naming the path of the field at fault in the error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = (path != ".").then_some(path);
        let message = match (&field, inner.classify()) {
            (_, serde_json::error::Category::Syntax | serde_json::error::Category::Eof) => {
                format!("the body is not valid JSON: {inner}")
            }
            (Some(field), _) => format!("{field}: {inner}"),
            (None, _) => inner.to_string(),
        };
        ApiError::BadRequest { message, field }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        slug: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        cap: i64,
    }

    fn message_and_field(body: &str) -> (String, Option<String>) {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::BadRequest { message, field }) => (message, field),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn names_unknown_and_mistyped_fields() {
        let (message, _) = message_and_field(r#"{"slug": "a", "colour": 1}"#);
        assert!(message.contains("colour"), "{message}");
        let (message, field) = message_and_field(r#"{"slug": "a", "inner": {"cap": "x"}}"#);
        assert_eq!(field.as_deref(), Some("inner.cap"));
        assert!(message.starts_with("inner.cap:"), "{message}");
        let (message, _) = message_and_field(r#"{"inner": null}"#);
        assert!(message.contains("slug"), "{message}");
        let (message, _) = message_and_field(r#"{"slug": "#);
        assert!(message.contains("not valid JSON"), "{message}");
    }
}
