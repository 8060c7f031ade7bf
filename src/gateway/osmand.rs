//! The OsmAnd protocol as Traccar Client (and other trackers) speak it: an HTTP GET or POST
//! with query or form parameters, or the JSON body current Traccar Client versions post.
//! Parsing only; `gateway::handlers` answers the request.

use serde::Deserialize;

use super::report::{parse_time, AppReport};

/// A parsed OsmAnd request: who (the device identifier, which is the device token) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct OsmandRequest {
    /// The app's "device identifier": the agent's device token.
    pub token: String,
    pub report: AppReport,
}

/// Knots to metres per second (OsmAnd's `speed` is in knots).
const KNOT_MPS: f64 = 0.514_444;

/// Parses the query or form parameters (`id`, `lat`, `lon`, `timestamp`, `speed`, `bearing`,
/// `altitude`, `accuracy`, `batt`, `charge`, `alarm`, `event`; others are ignored, as Traccar
/// does). `now` stands in for a missing timestamp.
pub fn parse_params(
    pairs: &[(String, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<OsmandRequest, String> {
    let get = |names: &[&str]| {
        pairs
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let number = |names: &[&str]| -> Result<Option<f64>, String> {
        get(names)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("`{}` is not a number: {v:?}", names[0]))
            })
            .transpose()
    };
    let token = get(&["id", "deviceid"])
        .ok_or("`id` (the device identifier: the agent's device token) is required")?
        .to_owned();
    let (lat, lon) = match (number(&["lat"])?, number(&["lon"])?, get(&["location"])) {
        (Some(lat), Some(lon), _) => (lat, lon),
        // Some trackers send `location=lat,lon`.
        (None, None, Some(loc)) => {
            let (a, b) = loc
                .split_once(',')
                .ok_or_else(|| format!("`location` is not \"lat,lon\": {loc:?}"))?;
            let parse = |v: &str| v.trim().parse::<f64>().ok().filter(|n| n.is_finite());
            parse(a)
                .zip(parse(b))
                .ok_or_else(|| format!("`location` is not \"lat,lon\": {loc:?}"))?
        }
        (None, _, _) => return Err("`lat` is required".into()),
        (_, None, _) => return Err("`lon` is required".into()),
    };
    let ts = match get(&["timestamp"]) {
        Some(t) => parse_time(t)?,
        None => now,
    };
    let battery = number(&["batt"])?;
    Ok(OsmandRequest {
        token,
        report: AppReport {
            ts,
            lat,
            lon,
            accuracy_m: number(&["accuracy"])?,
            speed_mps: number(&["speed"])?.map(|knots| knots * KNOT_MPS),
            heading_deg: number(&["bearing", "heading"])?,
            altitude_m: number(&["altitude"])?,
            battery_pct: battery,
            sos: get(&["alarm"]).is_some_and(|a| a.eq_ignore_ascii_case("sos")),
        },
    })
}

/// The JSON body of current Traccar Client versions.
#[derive(Deserialize)]
struct JsonBody {
    device_id: Option<serde_json::Value>,
    location: Option<JsonLocation>,
}

#[derive(Deserialize)]
struct JsonLocation {
    timestamp: Option<serde_json::Value>,
    coords: Option<JsonCoords>,
    battery: Option<JsonBattery>,
    #[allow(dead_code)] // Accepted, not used: movement is judged from the fixes.
    is_moving: Option<bool>,
    #[allow(dead_code)]
    event: Option<serde_json::Value>,
    /// An alarm, where a client sends one (`"sos"`).
    alarm: Option<String>,
}

#[derive(Deserialize)]
struct JsonCoords {
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy: Option<f64>,
    /// Metres per second; negative when unknown.
    speed: Option<f64>,
    /// Degrees; negative when unknown.
    heading: Option<f64>,
    altitude: Option<f64>,
}

#[derive(Deserialize)]
struct JsonBattery {
    /// 0-1; negative when unknown.
    level: Option<f64>,
    #[allow(dead_code)]
    is_charging: Option<bool>,
}

/// Parses the JSON body (`{"device_id": ..., "location": {"timestamp", "coords": {...},
/// "battery": {...}, ...}}`). `now` stands in for a missing timestamp.
pub fn parse_json(
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<OsmandRequest, String> {
    let body: JsonBody = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not the Traccar Client JSON: {e}"))?;
    let token = match body.device_id {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => return Err("`device_id` (the agent's device token) is required".into()),
    };
    let location = body.location.ok_or("`location` is required")?;
    let coords = location.coords.ok_or("`location.coords` is required")?;
    let (Some(lat), Some(lon)) = (coords.latitude, coords.longitude) else {
        return Err("`location.coords.latitude` and `longitude` are required".into());
    };
    let ts = match location.timestamp {
        None | Some(serde_json::Value::Null) => now,
        Some(serde_json::Value::String(s)) => parse_time(&s)?,
        Some(serde_json::Value::Number(n)) => parse_time(&n.to_string())?,
        Some(other) => return Err(format!("`location.timestamp` is not a time: {other}")),
    };
    let known = |v: Option<f64>| v.filter(|v| *v >= 0.0);
    Ok(OsmandRequest {
        token,
        report: AppReport {
            ts,
            lat,
            lon,
            accuracy_m: known(coords.accuracy),
            speed_mps: known(coords.speed),
            heading_deg: known(coords.heading),
            altitude_m: coords.altitude,
            battery_pct: known(location.battery.and_then(|b| b.level)).map(|l| l * 100.0),
            sos: location
                .alarm
                .is_some_and(|a| a.eq_ignore_ascii_case("sos")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn query_parameters_in_osmand_units() {
        let now = chrono::Utc::now();
        let r = parse_params(
            &pairs("id=blk_dev_x&timestamp=1796205600&lat=6.13&lon=1.21&speed=10&bearing=90&altitude=40&accuracy=8&batt=71&charge=true&alarm=sos&event=start&hdop=1"),
            now,
        )
        .unwrap();
        assert_eq!(r.token, "blk_dev_x");
        assert_eq!((r.report.lat, r.report.lon), (6.13, 1.21));
        assert!(
            (r.report.speed_mps.unwrap() - 5.14444).abs() < 1e-6,
            "knots to m/s"
        );
        assert_eq!(r.report.heading_deg, Some(90.0));
        assert_eq!(r.report.battery_pct, Some(71.0));
        assert!(r.report.sos);
        assert_eq!(r.report.ts.timestamp(), 1_796_205_600);
        let r = parse_params(&pairs("id=t&location=6.1,1.2"), now).unwrap();
        assert_eq!((r.report.lat, r.report.lon, r.report.ts), (6.1, 1.2, now));
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = chrono::Utc::now();
        for (q, want) in [
            ("lat=6&lon=1", "`id`"),
            ("id=t&lon=1", "`lat`"),
            ("id=t&lat=6", "`lon`"),
            ("id=t&lat=north&lon=1", "`lat` is not a number"),
            ("id=t&lat=6&lon=1&timestamp=soon", "`timestamp`"),
            ("id=t&lat=6&lon=1&speed=NaN", "`speed`"),
            ("id=t&location=6", "`location`"),
        ] {
            let e = parse_params(&pairs(q), now).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn the_traccar_client_json_body() {
        let now = chrono::Utc::now();
        let body = br#"{"location":{"timestamp":"2026-12-02T10:00:00.000Z","coords":{"latitude":6.13,"longitude":1.21,
            "accuracy":12.5,"speed":-1,"heading":-1,"altitude":35},"is_moving":true,"odometer":0,"event":"motionchange",
            "battery":{"level":0.52,"is_charging":false},"activity":{"type":"walking"},"extras":{}},"device_id":"blk_dev_y"}"#;
        let r = parse_json(body, now).unwrap();
        assert_eq!(r.token, "blk_dev_y");
        assert_eq!(r.report.accuracy_m, Some(12.5));
        assert_eq!(
            (r.report.speed_mps, r.report.heading_deg),
            (None, None),
            "-1 is unknown"
        );
        assert_eq!(r.report.battery_pct, Some(52.0));
        assert_eq!(r.report.ts.timestamp(), 1_796_205_600);
        for (bad, want) in [
            (&br#"{"location":{"coords":{"latitude":1,"longitude":2}}}"#[..], "`device_id`"),
            (br#"{"device_id":"t"}"#, "`location`"),
            (br#"{"device_id":"t","location":{"coords":{"latitude":1}}}"#, "latitude"),
            (br#"{"device_id":"t","location":{"timestamp":true,"coords":{"latitude":1,"longitude":2}}}"#, "timestamp"),
            (b"not json", "not the Traccar Client JSON"),
        ] {
            let e = parse_json(bad, now).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
