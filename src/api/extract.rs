//! Request extractors whose failures are `ApiError`s naming the problem: JSON bodies (with
//! the path of the offending field), ids in paths and query strings.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, error::PayloadError, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::api::error::ApiError;

/// A JSON body. Unknown fields, wrong types and missing fields are 400s naming the field;
/// a body over the configured limit is 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        let limit = req
            .app_data::<web::Data<crate::state::AppState>>()
            .map_or(256 * 1024, |s| s.settings.server.json_body_limit_bytes);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be JSON, with Content-Type: application/json".into(),
                ));
            }
            let bytes = body.await.map_err(|e| body_error(e, limit))?;
            if bytes.len() > limit {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the body exceeds {limit} bytes"
                )));
            }
            parse_json(&bytes).map(ApiJson)
        })
    }
}

fn body_error(e: actix_web::Error, limit: usize) -> ApiError {
    match e.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            ApiError::PayloadTooLarge(format!("the body exceeds {limit} bytes"))
        }
        _ => {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("overflow") || text.contains("too large") {
                ApiError::PayloadTooLarge(format!("the body exceeds {limit} bytes"))
            } else {
                ApiError::BadRequest {
                    code: "bad_body",
                    message: format!("cannot read the body: {text}"),
                    field: None,
                }
            }
        }
    }
}

/// Parses JSON, reporting the path of a bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest {
                code: "bad_json",
                message: format!("malformed JSON: {inner}"),
                field: None,
            }
        } else {
            let field = (path != ".").then_some(path);
            ApiError::BadRequest {
                code: "invalid_field",
                message: match &field {
                    Some(f) => format!("{f}: {inner}"),
                    None => inner.to_string(),
                },
                field,
            }
        }
    })
}

/// Maps actix's path errors (a malformed UUID, typically) to a 400.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest {
        code: "invalid_path",
        message: format!("invalid id in path: {err}"),
        field: None,
    }
    .into()
}

/// Maps query-string errors to a 400.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::BadRequest {
        code: "invalid_query",
        message: format!("invalid query string: {err}"),
        field: None,
    }
    .into()
}

/// Checks `?limit=&offset=` paging: limit 1..=200 (default 50), offset >= 0.
pub fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: "limit must be between 1 and 200".into(),
            field: Some("limit".into()),
        });
    }
    if offset < 0 {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: "offset must not be negative".into(),
            field: Some("offset".into()),
        });
    }
    Ok((limit, offset))
}

/// Integer fields that also take a whole number written as a float (`2.0`): JSON has one
/// number type, JSON Schema counts `2.0` as an integer, and some clients (JavaScript among
/// them) cannot tell the two apart. A fraction or a value out of the type's range is still
/// refused, naming the field.
pub mod whole {
    use serde::{de::Error, Deserialize, Deserializer};

    fn to_int<T: TryFrom<i64>, E: Error>(n: serde_json::Number) -> Result<T, E> {
        n.as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| E::custom(format!("expected a whole number within range, not {n}")))
    }

    /// For a required integer field.
    pub fn int<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        to_int(serde_json::Number::deserialize(d)?)
    }

    /// For an optional one (with `#[serde(default)]`): null and absent are `None`.
    pub fn opt<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(to_int)
            .transpose()
    }
}

#[cfg(test)]
mod whole_tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::whole::int")]
        a: i32,
        #[serde(default, deserialize_with = "super::whole::opt")]
        b: Option<usize>,
    }

    #[test]
    fn whole_numbers_written_as_floats_are_integers_and_nothing_else_is() {
        let ok: Body = serde_json::from_str(r#"{"a": 2.0, "b": 3}"#).unwrap();
        assert_eq!((ok.a, ok.b), (2, Some(3)));
        let ok: Body = serde_json::from_str(r#"{"a": -7, "b": null}"#).unwrap();
        assert_eq!((ok.a, ok.b), (-7, None));
        let ok: Body = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        assert_eq!(ok.b, None);
        for bad in [
            r#"{"a": 2.5}"#,
            r#"{"a": 1e20}"#,
            r#"{"a": 3000000000}"#,
            r#"{"a": "2"}"#,
            r#"{"a": 1, "b": -1}"#,
            r#"{"a": 1, "b": 0.5}"#,
        ] {
            let e = serde_json::from_str::<Body>(bad).unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
    }
}
