//! The per-event checks of a session: the rate limit, what every event must satisfy (time,
//! coordinates), and whether a fix can be trusted for fence decisions. Synchronous and
//! allocation-light: they run for every event.

use chrono::{DateTime, Utc};

use crate::{
    configuration::IngestSettings,
    domain::geo::metres,
    ingest::{
        frames::{RejectCode, Rejection},
        protocol::{DeviceEvent, Fix},
        session::LastFix,
    },
};

pub use crate::limits::TokenBucket;

/// Checks what every event must satisfy: a plausible time and, if it has a fix, valid
/// coordinates.
pub fn check_event(
    ev: &DeviceEvent,
    now: DateTime<Utc>,
    limits: &IngestSettings,
) -> Result<(), Rejection> {
    let ahead = (ev.ts - now).num_seconds();
    if ahead > limits.max_future_s {
        return Err(Rejection::new(
            Some(ev.seq),
            RejectCode::InvalidTimestamp,
            format!(
                "`ts` is {ahead} s in the future (at most {} s allowed)",
                limits.max_future_s
            ),
        ));
    }
    if -ahead > limits.max_age_s {
        return Err(Rejection::new(
            Some(ev.seq),
            RejectCode::InvalidTimestamp,
            format!("`ts` is older than {} s", limits.max_age_s),
        ));
    }
    if let Some(fix) = ev.fix() {
        check_coordinates(fix)
            .map_err(|m| Rejection::new(Some(ev.seq), RejectCode::InvalidCoordinates, m))?;
    }
    Ok(())
}

fn check_coordinates(fix: &Fix) -> Result<(), String> {
    if !fix.lat.is_finite() || !fix.lon.is_finite() {
        return Err("lat and lon must be finite numbers".into());
    }
    if !(-90.0..=90.0).contains(&fix.lat) {
        return Err(format!("lat {} is outside -90..90", fix.lat));
    }
    if !(-180.0..=180.0).contains(&fix.lon) {
        return Err(format!("lon {} is outside -180..180", fix.lon));
    }
    if fix.lat == 0.0 && fix.lon == 0.0 {
        return Err("(0, 0) is a GPS failure, not a position".into());
    }
    if fix.accuracy_m.is_some_and(|a| !a.is_finite() || a < 0.0) {
        return Err("accuracy_m must be a non-negative number".into());
    }
    Ok(())
}

/// Decides whether a fix can be trusted for geofence decisions, and why not.
pub fn trust(
    fix: &Fix,
    ts: DateTime<Utc>,
    last: Option<&LastFix>,
    limits: &IngestSettings,
) -> Result<(), &'static str> {
    if fix
        .accuracy_m
        .is_some_and(|a| f64::from(a) > limits.max_accuracy_m)
    {
        return Err("accuracy");
    }
    if let Some(prev) = last {
        let dt = (ts - prev.ts).num_milliseconds() as f64 / 1000.0;
        if dt > 0.0 {
            let kmh = metres(prev.lat, prev.lon, fix.lat, fix.lon) / dt * 3.6;
            if kmh > limits.max_speed_kmh {
                return Err("speed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::Duration;

    use super::*;

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20, 40, t0);
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), 40);
        assert!(!b.take(t0));
        let later = t0 + std::time::Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 10);
    }

    #[test]
    fn implausible_fixes_are_not_trusted() {
        let limits = crate::configuration::Settings::defaults().ingest;
        let t0 = Utc::now();
        let fix = |lat, acc| Fix {
            lat,
            lon: 1.0,
            accuracy_m: Some(acc),
            speed_mps: None,
            heading_deg: None,
            altitude_m: None,
            battery_pct: None,
        };
        assert_eq!(trust(&fix(6.0, 500.0), t0, None, &limits), Err("accuracy"));
        let last = LastFix {
            ts: t0,
            lat: 6.0,
            lon: 1.0,
        };
        // 1 km in 1 s = 3600 km/h.
        assert_eq!(
            trust(
                &fix(6.009, 5.0),
                t0 + Duration::seconds(1),
                Some(&last),
                &limits
            ),
            Err("speed")
        );
        assert_eq!(
            trust(
                &fix(6.00001, 5.0),
                t0 + Duration::seconds(1),
                Some(&last),
                &limits
            ),
            Ok(())
        );
    }
}
