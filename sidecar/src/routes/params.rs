//! Reading the transparency routes' path and query parameters into `ApiError`s: axum's own
//! extractors answer a repeated parameter or a path segment that is not UTF-8 with plain text,
//! and every error here is the JSON `{code, message, details?}`.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;

use crate::error::ApiError;

/// The values of the `known` query parameters (others are ignored, as the shared API does); a
/// known one given twice is refused rather than guessed.
pub fn query(
    raw: Option<&str>,
    known: &[&'static str],
) -> Result<HashMap<&'static str, String>, ApiError> {
    let mut values = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let Some(&field) = known.iter().find(|k| **k == name) else {
            continue;
        };
        if values.insert(field, value.into_owned()).is_some() {
            return Err(ApiError::InvalidParameter {
                field,
                reason: "Must be given at most once.",
            });
        }
    }
    Ok(values)
}

/// A chain id from the path. One that no chain can have (not UTF-8, or holding a NUL, which
/// PostgreSQL's text refuses) names nothing: 404, as an unknown chain.
pub fn chain_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(chain)) if !chain.contains('\0') => Ok(chain),
        _ => Err(ApiError::NotFound),
    }
}

/// A whole number of at least 1 that fits a PostgreSQL bigint, in plain digits.
pub fn positive(value: &str) -> Option<u64> {
    let n = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()?;
    (n >= 1 && i64::try_from(n).is_ok()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_parameter_given_twice_is_refused() {
        let q = query(Some("a=1&b=2&other=x&other=y"), &["a", "b"]).expect("parses");
        assert_eq!(q.get("a").map(String::as_str), Some("1"));
        assert_eq!(q.get("b").map(String::as_str), Some("2"));
        assert!(matches!(
            query(Some("a=1&a=1"), &["a"]),
            Err(ApiError::InvalidParameter { field: "a", .. })
        ));
        assert!(query(None, &["a"]).expect("parses").is_empty());
    }

    #[test]
    fn sizes_are_plain_digits() {
        assert_eq!(positive("7"), Some(7));
        assert_eq!(positive("+7"), None);
        assert_eq!(positive("0"), None);
        assert_eq!(positive("-1"), None);
        assert_eq!(positive(" 7"), None);
        assert_eq!(positive("9223372036854775808"), None, "above bigint");
        assert_eq!(
            positive("9223372036854775807"),
            Some(9_223_372_036_854_775_807)
        );
    }
}
