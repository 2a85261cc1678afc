//! `GET /api/v1/audit/verify`: chain integrity over an optional date range.

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, SubsecRound, Timelike};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

const FROM_REASON: &str =
    "Must be a valid ISO 8601 date-time string (e.g. 2026-03-01T00:00:00.000Z).";
const TO_REASON: &str =
    "Must be a valid ISO 8601 date-time string (e.g. 2026-03-31T23:59:59.999Z).";
const RANGE_REASON: &str = "fromDate must be before or equal to toDate.";

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub verified: bool,
    pub checked_count: i64,
    pub broken_at_event_id: Option<String>,
    /// Not in the seed's schema, which allows more fields: what an investigator needs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_chain_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_date: Option<String>,
}

/// An RFC 3339 date-time (the profile of ISO 8601 that OpenAPI's `date-time` means), with an
/// explicit offset, truncated to the microseconds PostgreSQL keeps.
fn parse_date_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let t = DateTime::parse_from_rfc3339(text).ok()?.trunc_subsecs(6);
    // chrono takes second 60 in any minute; RFC 3339 (5.7) and JSON Schema's `date-time` only
    // in the last minute of a UTC day.
    let utc = t.to_utc();
    let leap_second = utc.nanosecond() >= 1_000_000_000;
    (!leap_second || (utc.hour(), utc.minute()) == (23, 59)).then_some(t)
}

/// In UTC, with milliseconds like the spec's examples unless the bound had finer precision: the
/// echo must name the bound that was actually used. RFC 3339 years have four digits, so a bound
/// within a day of year 0 or 10000 whose UTC form falls outside them keeps the caller's offset.
fn format_date_time(t: DateTime<FixedOffset>) -> String {
    let precision = if t.nanosecond().is_multiple_of(1_000_000) {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Micros
    };
    let utc = t.to_utc();
    if (0..=9999).contains(&utc.year()) {
        utc.to_rfc3339_opts(precision, true)
    } else {
        t.to_rfc3339_opts(precision, true)
    }
}

struct Range {
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
}

fn parse_range(query: Option<&str>) -> Result<Range, ApiError> {
    let mut from: Option<String> = None;
    let mut to: Option<String> = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (slot, field, reason) = match name.as_ref() {
            "fromDate" => (&mut from, "fromDate", FROM_REASON),
            "toDate" => (&mut to, "toDate", TO_REASON),
            _ => continue,
        };
        // Two values for one bound are ambiguous; refusing beats guessing which one was meant.
        if slot.replace(value.into_owned()).is_some() {
            return Err(ApiError::InvalidParameter { field, reason });
        }
    }
    let from = from
        .map(|v| {
            parse_date_time(&v).ok_or(ApiError::InvalidParameter {
                field: "fromDate",
                reason: FROM_REASON,
            })
        })
        .transpose()?;
    let to = to
        .map(|v| {
            parse_date_time(&v).ok_or(ApiError::InvalidParameter {
                field: "toDate",
                reason: TO_REASON,
            })
        })
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::InvalidDateRange {
                reason: RANGE_REASON,
            });
        }
    }
    Ok(Range { from, to })
}

pub async fn verify(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<VerifyResponse>, ApiError> {
    let range = parse_range(query.as_deref())?;
    let result = state
        .backend
        .verify_chain(range.from.map(|t| t.to_utc()), range.to.map(|t| t.to_utc()))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(VerifyResponse {
        verified: result.verified,
        checked_count: result.checked_count,
        broken_at_event_id: result.broken_at_event_id.map(|id| id.to_string()),
        break_kind: result.break_kind.map(|k| k.as_str()),
        broken_chain_id: result.broken_chain_id,
        from_date: range.from.map(format_date_time),
        to_date: range.to.map(format_date_time),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn date_times() {
        for ok in [
            "2026-03-01T00:00:00.000Z",
            "2026-03-01T00:00:00Z",
            "2026-03-01T02:00:00+02:00",
            "2026-03-01t00:00:00z",
        ] {
            assert_eq!(
                parse_date_time(ok).map(format_date_time).as_deref(),
                Some("2026-03-01T00:00:00.000Z"),
                "{ok}"
            );
        }
        for bad in [
            "",
            "2026-03-01",
            "2026-03-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "1743155400",
        ] {
            assert!(parse_date_time(bad).is_none(), "{bad}");
        }
        assert_eq!(
            format_date_time(parse_date_time("2026-03-31T23:59:59.999999999Z").unwrap()),
            "2026-03-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn echoes_are_rfc_3339_even_at_the_ends_of_the_year_range() {
        let echo = |text| parse_date_time(text).map(format_date_time);
        assert_eq!(
            echo("9999-12-31T23:59:59-23:59").as_deref(),
            Some("9999-12-31T23:59:59.000-23:59")
        );
        assert_eq!(
            echo("0000-01-01T00:00:00+01:00").as_deref(),
            Some("0000-01-01T00:00:00.000+01:00")
        );
        assert_eq!(
            echo("0001-01-01T00:00:00+23:59").as_deref(),
            Some("0000-12-31T00:01:00.000Z")
        );
    }

    #[test]
    fn leap_seconds_only_in_the_last_minute_of_a_utc_day() {
        let echo = |text| parse_date_time(text).map(format_date_time);
        assert_eq!(
            echo("2016-12-31T23:59:60.5Z").as_deref(),
            Some("2016-12-31T23:59:60.500Z")
        );
        assert_eq!(
            echo("2016-12-31T15:59:60-08:00").as_deref(),
            Some("2016-12-31T23:59:60.000Z")
        );
        for bad in [
            "2026-01-01T00:00:60Z",
            "2016-12-31T23:58:60Z",
            "2016-12-31T23:59:60-08:00",
        ] {
            assert!(parse_date_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn duplicate_bounds_are_refused() {
        assert!(matches!(
            parse_range(Some(
                "toDate=2026-03-01T00:00:00Z&toDate=2026-03-02T00:00:00Z"
            )),
            Err(ApiError::InvalidParameter {
                field: "toDate",
                ..
            })
        ));
    }

    #[test]
    fn equal_bounds_are_a_valid_range() {
        let r = parse_range(Some(
            "fromDate=2026-03-01T00:00:00Z&toDate=2026-03-01T00:00:00.000Z",
        ))
        .unwrap();
        assert_eq!(r.from, r.to);
    }
}
