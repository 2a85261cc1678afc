//! Value parsers shared by the settings. Each returns the reason a value is refused, which
//! `ConfigError` prefixes with the variable's name; none quotes a secret's value (they are never
//! used for one).

use std::str::FromStr;

/// Any value `T` parses, described as `expected` in the error.
pub fn parsed<T: FromStr>(value: &str, expected: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("expected {expected}, got {value:?}"))
}

/// A positive integer (so a zero-sized pool, limit or interval is refused).
pub fn positive<T: FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    let n: T = parsed(value, "a positive integer")?;
    if n <= T::default() {
        return Err("expected a positive integer".to_owned());
    }
    Ok(n)
}

/// A non-negative integer, for a type that has negative values.
pub fn non_negative<T: FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    let n: T = parsed(value, "a non-negative integer")?;
    if n < T::default() {
        return Err("expected a non-negative integer".to_owned());
    }
    Ok(n)
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}
