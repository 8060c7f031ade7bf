//! OwnTracks in HTTP mode: the app POSTs one JSON message per request (`_type` location,
//! transition, lwt, and others this daemon has no use for). Parsing only; identity (HTTP
//! Basic or `X-Limit-U`/`X-Limit-D`) and the answer are in `gateway::handlers`.

use serde::Deserialize;

use super::report::AppReport;

/// A message the daemon acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnTracksMessage {
    /// A fix.
    Location(AppReport),
    /// The app's own region monitoring says the phone entered or left a region: stored and
    /// shown, never trusted for the site's fence (the daemon judges fences from fixes).
    Transition {
        report: AppReport,
        /// `enter` or `leave`.
        event: String,
        /// The region's name in the app.
        region: Option<String>,
    },
    /// The app's last will: the broker says the phone went offline (in HTTP mode some apps
    /// still send it when they stop).
    Lwt,
    /// Any other `_type` (waypoints, cards, status...): accepted and ignored.
    Ignored(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "_type")]
    kind: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    /// Unix seconds of the fix.
    tst: Option<f64>,
    acc: Option<f64>,
    /// km/h
    vel: Option<f64>,
    /// Course over ground, degrees.
    cog: Option<f64>,
    alt: Option<f64>,
    batt: Option<f64>,
    event: Option<String>,
    desc: Option<String>,
}

/// Parses one message.
pub fn parse(body: &[u8]) -> Result<OwnTracksMessage, String> {
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an OwnTracks JSON message: {e}"))?;
    let kind = raw.kind.clone().ok_or("`_type` is required")?;
    match kind.as_str() {
        "location" => Ok(OwnTracksMessage::Location(report(&raw)?)),
        "transition" => Ok(OwnTracksMessage::Transition {
            report: report(&raw)?,
            event: raw
                .event
                .clone()
                .filter(|e| e == "enter" || e == "leave")
                .ok_or("`event` of a transition must be \"enter\" or \"leave\"")?,
            region: raw.desc.clone(),
        }),
        "lwt" => Ok(OwnTracksMessage::Lwt),
        other => Ok(OwnTracksMessage::Ignored(other.to_owned())),
    }
}

fn report(raw: &Raw) -> Result<AppReport, String> {
    let (Some(lat), Some(lon)) = (raw.lat, raw.lon) else {
        return Err("`lat` and `lon` are required".into());
    };
    let tst = raw
        .tst
        .ok_or("`tst` (Unix seconds of the fix) is required")?;
    let ts = chrono::DateTime::from_timestamp_millis((tst * 1000.0).round() as i64)
        .filter(|_| tst.is_finite())
        .ok_or_else(|| format!("`tst` {tst:e} is out of range"))?;
    let known = |v: Option<f64>| v.filter(|v| *v >= 0.0);
    Ok(AppReport {
        ts,
        lat,
        lon,
        accuracy_m: known(raw.acc),
        speed_mps: known(raw.vel).map(|kmh| kmh / 3.6),
        heading_deg: known(raw.cog),
        altitude_m: raw.alt,
        battery_pct: known(raw.batt),
        sos: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_transition_lwt_and_others() {
        let loc = br#"{"_type":"location","lat":6.13,"lon":1.21,"tst":1796205600,"acc":9,"vel":36,"cog":180,
            "alt":40,"batt":64,"tid":"KM","t":"u","conn":"m","BSSID":"x"}"#;
        let OwnTracksMessage::Location(r) = parse(loc).unwrap() else {
            panic!("a location")
        };
        assert_eq!((r.lat, r.lon, r.accuracy_m), (6.13, 1.21, Some(9.0)));
        assert_eq!(r.speed_mps, Some(10.0), "36 km/h");
        assert_eq!(r.ts.timestamp(), 1_796_205_600);
        let tr = br#"{"_type":"transition","event":"leave","desc":"Gate","lat":6.13,"lon":1.21,"tst":1796205600,"wtst":1,"acc":9,"t":"c"}"#;
        assert!(
            matches!(parse(tr).unwrap(), OwnTracksMessage::Transition { ref event, .. } if event == "leave")
        );
        assert_eq!(
            parse(br#"{"_type":"lwt","tst":1796205600}"#).unwrap(),
            OwnTracksMessage::Lwt
        );
        assert_eq!(
            parse(br#"{"_type":"waypoints","waypoints":[]}"#).unwrap(),
            OwnTracksMessage::Ignored("waypoints".into())
        );
    }

    #[test]
    fn bad_messages_are_named() {
        for (bad, want) in [
            (&b"[]"[..], "not an OwnTracks JSON message"),
            (br#"{"lat":1}"#, "`_type`"),
            (
                br#"{"_type":"location","lat":1,"tst":1}"#,
                "`lat` and `lon`",
            ),
            (br#"{"_type":"location","lat":1,"lon":2}"#, "`tst`"),
            (
                br#"{"_type":"transition","lat":1,"lon":2,"tst":1,"event":"stay"}"#,
                "`event`",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
