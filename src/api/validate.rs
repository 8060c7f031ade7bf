//! Field checks shared by the resources; each failure is a 422 naming the field.

use chrono::{DateTime, Utc};

use crate::api::error::ApiError;

// The longest text each kind of field takes, written once for every resource and for both
// its create and its update.
/// Names of companies, sites, checkpoints, tokens and contacts.
pub const NAME_MAX: usize = 200;
/// A person's first or last name.
pub const PERSON_NAME_MAX: usize = 100;
/// A phone number as typed.
pub const PHONE_MAX: usize = 50;
/// Short codes such as an employee number.
pub const CODE_MAX: usize = 50;
/// A postal address.
pub const ADDRESS_MAX: usize = 500;
/// A city or country.
pub const PLACE_MAX: usize = 100;
/// Free text: descriptions, instructions, reasons, review notes.
pub const LONG_TEXT_MAX: usize = 2000;

/// Trimmed, non-empty text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let t = value.trim();
    if t.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if t.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("{field} must have at most {max} characters"),
        ));
    }
    if t.contains('\0') {
        // PostgreSQL cannot store it; say which field rather than fail at the insert.
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain the NUL character (U+0000)"),
        ));
    }
    Ok(t.to_owned())
}

/// Optional text: absent stays absent; present must pass `text`.
pub fn opt_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

/// A plausible email address, lower-cased.
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let e = text(field, value, 254)?;
    crate::domain::email::parse_email(&e)
        .ok_or_else(|| ApiError::invalid(field, format!("{field} is not an email address")))
}

/// A finite number within `[min, max]`.
pub fn number(field: &str, value: f64, min: f64, max: f64) -> Result<f64, ApiError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(value)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must be between {min} and {max}"),
        ))
    }
}

/// Latitude and longitude, both or neither.
pub fn lat_lon(
    lat: Option<f64>,
    lon: Option<f64>,
    prefix: &str,
) -> Result<Option<(f64, f64)>, ApiError> {
    match (lat, lon) {
        (None, None) => Ok(None),
        (Some(lat), Some(lon)) => Ok(Some((
            number(&format!("{prefix}lat"), lat, -90.0, 90.0)?,
            number(&format!("{prefix}lon"), lon, -180.0, 180.0)?,
        ))),
        _ => Err(ApiError::invalid(
            &format!("{prefix}lat"),
            format!("give both {prefix}lat and {prefix}lon, or neither"),
        )),
    }
}

/// `end` strictly after `start`.
pub fn ordered(
    start_field: &str,
    start: DateTime<Utc>,
    end_field: &str,
    end: DateTime<Utc>,
) -> Result<(), ApiError> {
    if end > start {
        Ok(())
    } else {
        Err(ApiError::invalid(
            end_field,
            format!("{end_field} must be after {start_field}"),
        ))
    }
}

/// A list of short labels (skills, certification names): trimmed, non-empty, deduplicated.
pub fn labels(field: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    if values.len() > 100 {
        return Err(ApiError::invalid(
            field,
            format!("{field} has more than 100 entries"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let t = text(field, v, 100)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The largest magnitude of a number in a JSON object stored as `jsonb`: PostgreSQL keeps
/// numbers exactly and writes 1.7e308 back as 309 digits, which do not read back into a
/// double (the row could then never be read).
const MAX_JSON_NUMBER: f64 = 1e300;

/// A JSON object (metadata).
pub fn object(field: &str, value: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    if !(value.is_object() && value.to_string().len() <= 16 * 1024) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be a JSON object of at most 16 KiB"),
        ));
    }
    fn numbers_fit(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() <= MAX_JSON_NUMBER),
            serde_json::Value::Array(a) => a.iter().all(numbers_fit),
            serde_json::Value::Object(o) => o.values().all(numbers_fit),
            _ => true,
        }
    }
    if !numbers_fit(value) {
        return Err(ApiError::invalid(
            field,
            format!("numbers in {field} must be between -1e300 and 1e300"),
        ));
    }
    Ok(value.clone())
}
