//! A site's geofence, parsed from the JSON the API receives: a GeoJSON `Polygon`, or a
//! `Circle` (centre and radius in metres). Parsing validates everything the ingest path
//! relies on later (closed rings, ranges, no self-intersection), so that once a geofence is
//! stored it is usable as is.

use geo::{Coord, LineString, Polygon};
use serde_json::Value;

/// Largest circle radius accepted, in metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Smallest circle radius, in metres: a fence smaller than a metre is a typing error.
pub const MIN_RADIUS_M: f64 = 1.0;
/// Most positions accepted in one polygon (all rings together): keeps lookups bounded.
pub const MAX_POLYGON_POSITIONS: usize = 10_000;

/// A validated geofence, plus the JSON it came from (stored and returned unchanged).
#[derive(Debug, Clone, PartialEq)]
pub struct GeofenceSpec {
    /// The shape, in lon/lat degrees.
    pub shape: GeofenceShape,
    /// The JSON exactly as received.
    pub raw: Value,
}

/// The two shapes a site may have.
#[derive(Debug, Clone, PartialEq)]
pub enum GeofenceShape {
    /// Exterior ring first, then holes; x = longitude, y = latitude.
    Polygon(Polygon<f64>),
    /// Centre (x = longitude, y = latitude) and radius in metres.
    Circle { center: Coord<f64>, radius_m: f64 },
}

/// Why a geofence was refused; the message is shown to the API caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid geofence: {0}")]
pub struct GeofenceError(pub String);

fn err(message: impl Into<String>) -> GeofenceError {
    GeofenceError(message.into())
}

impl GeofenceSpec {
    /// Parses and validates `value`.
    pub fn parse(value: &Value) -> Result<GeofenceSpec, GeofenceError> {
        let object = value
            .as_object()
            .ok_or_else(|| err("must be a JSON object"))?;
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("`type` must be \"Polygon\" or \"Circle\""))?;
        let shape = match kind {
            "Polygon" => {
                only_keys(object, &["type", "coordinates"])?;
                GeofenceShape::Polygon(parse_polygon(object.get("coordinates"))?)
            }
            "Circle" => {
                only_keys(object, &["type", "center", "radius_m"])?;
                let center = parse_position(
                    object
                        .get("center")
                        .ok_or_else(|| err("Circle needs `center`: [lon, lat]"))?,
                    "center",
                )?;
                let radius_m = object
                    .get("radius_m")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| err("Circle needs `radius_m`, a number of metres"))?;
                // The column keeps millimetres: anything smaller would be stored as 0.
                if !(MIN_RADIUS_M..=MAX_RADIUS_M).contains(&radius_m) {
                    return Err(err(format!(
                        "radius_m must be between {MIN_RADIUS_M} and {MAX_RADIUS_M}, not {radius_m}"
                    )));
                }
                GeofenceShape::Circle { center, radius_m }
            }
            other => {
                return Err(err(format!(
                    "unsupported type \"{other}\"; use \"Polygon\" or \"Circle\""
                )))
            }
        };
        Ok(GeofenceSpec {
            shape,
            raw: value.clone(),
        })
    }

    /// The database's `"GeofenceShape"` label.
    pub fn shape_label(&self) -> &'static str {
        match self.shape {
            GeofenceShape::Polygon(_) => "POLYGON",
            GeofenceShape::Circle { .. } => "CIRCLE",
        }
    }

    /// Circle centre (lat, lon) and radius, for the derived columns; `None` for polygons.
    pub fn circle(&self) -> Option<(f64, f64, f64)> {
        match self.shape {
            GeofenceShape::Circle { center, radius_m } => Some((center.y, center.x, radius_m)),
            GeofenceShape::Polygon(_) => None,
        }
    }
}

fn only_keys(
    object: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), GeofenceError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(format!(
            "unknown field `{k}` (expected {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_position(value: &Value, what: &str) -> Result<Coord<f64>, GeofenceError> {
    let pair = value
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| err(format!("{what} must be a [lon, lat] pair")))?;
    let (Some(lon), Some(lat)) = (pair[0].as_f64(), pair[1].as_f64()) else {
        return Err(err(format!("{what} must hold two numbers [lon, lat]")));
    };
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(err(format!(
            "{what} [{lon}, {lat}] is out of range (longitude -180..180 first, then latitude -90..90)"
        )));
    }
    Ok(Coord { x: lon, y: lat })
}

fn parse_polygon(value: Option<&Value>) -> Result<Polygon<f64>, GeofenceError> {
    let rings = value
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            err("Polygon needs `coordinates`: an array of rings, each an array of [lon, lat]")
        })?;
    let total: usize = rings.iter().map(|r| r.as_array().map_or(0, Vec::len)).sum();
    if total > MAX_POLYGON_POSITIONS {
        return Err(err(format!(
            "at most {MAX_POLYGON_POSITIONS} positions, not {total}"
        )));
    }
    let mut parsed = Vec::with_capacity(rings.len());
    for (i, ring) in rings.iter().enumerate() {
        let name = if i == 0 {
            "exterior ring".to_owned()
        } else {
            format!("hole {i}")
        };
        let positions = ring
            .as_array()
            .ok_or_else(|| err(format!("{name} must be an array of [lon, lat]")))?;
        if positions.len() < 4 {
            return Err(err(format!(
                "{name} needs at least 4 positions (first = last), has {}",
                positions.len()
            )));
        }
        let coords = positions
            .iter()
            .enumerate()
            .map(|(j, p)| parse_position(p, &format!("{name} position {j}")))
            .collect::<Result<Vec<_>, _>>()?;
        if coords.first() != coords.last() {
            return Err(err(format!(
                "{name} is not closed: its last position must equal its first"
            )));
        }
        parsed.push(LineString::new(coords));
    }
    let exterior = parsed.remove(0);
    let polygon = Polygon::new(exterior, parsed);
    use geo::algorithm::Validation;
    polygon.check_validation().map_err(|e| err(e.to_string()))?;
    use geo::Area;
    if polygon.unsigned_area() == 0.0 {
        return Err(err("polygon has no area"));
    }
    Ok(polygon)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn square() -> Value {
        json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.01, 6.0], [1.01, 6.01], [1.0, 6.01], [1.0, 6.0]]]})
    }

    #[test]
    fn accepts_a_closed_polygon_and_a_circle() {
        let p = GeofenceSpec::parse(&square()).unwrap();
        assert_eq!(p.shape_label(), "POLYGON");
        assert_eq!(p.raw, square());
        let c = GeofenceSpec::parse(
            &json!({"type": "Circle", "center": [1.22, 6.13], "radius_m": 150}),
        )
        .unwrap();
        assert_eq!(c.circle(), Some((6.13, 1.22, 150.0)));
    }

    #[test]
    fn refuses_bad_shapes_with_a_reason() {
        let cases = [
            (
                json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.01, 6.0], [1.0, 6.0]]]}),
                "at least 4",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.01, 6.0], [1.01, 6.01], [1.0, 6.02]]]}),
                "not closed",
            ),
            // A bow-tie: edges cross.
            (
                json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}),
                "intersect",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[200.0, 6.0], [1.01, 6.0], [1.01, 6.01], [200.0, 6.0]]]}),
                "out of range",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[1.0, 95.0], [1.01, 6.0], [1.01, 6.01], [1.0, 95.0]]]}),
                "out of range",
            ),
            (
                json!({"type": "Circle", "center": [1.22, 6.13], "radius_m": 0}),
                "radius_m",
            ),
            (
                json!({"type": "Circle", "center": [1.22, 6.13], "radius_m": 50001}),
                "radius_m",
            ),
            (
                json!({"type": "Circle", "center": [1.22], "radius_m": 10}),
                "[lon, lat]",
            ),
            (
                json!({"type": "Circle", "center": [1.22, 6.13], "radius_m": 10, "extra": 1}),
                "unknown field",
            ),
            (
                json!({"type": "MultiPolygon", "coordinates": []}),
                "unsupported",
            ),
            (json!("Polygon"), "object"),
        ];
        for (value, expected) in cases {
            let e = GeofenceSpec::parse(&value).unwrap_err();
            assert!(e.0.contains(expected), "{value}: {e}");
        }
    }
}
