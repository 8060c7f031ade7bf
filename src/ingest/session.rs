//! What one agent's session knows and decides, apart from the transport: rate limiting,
//! event validation, trust of fixes, and the geofence dwell rules while on duty. Everything
//! here is synchronous and allocation-light: it runs for every event.

use std::time::Instant;

use chrono::{DateTime, Utc};
use geo::{Closest, ClosestPoint, Contains, Coord, Distance, Haversine, Point};
use uuid::Uuid;

use crate::{
    configuration::{GeofenceSettings, IngestSettings},
    domain::geofence::GeofenceShape,
    geofence::SiteFence,
    ingest::protocol::{DeviceEvent, Fix, RejectCode, Rejection},
};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: burst as f64,
            rate: rate as f64,
            burst: burst as f64,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

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
    if let Some(fix) = &ev.fix {
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

/// Great-circle distance in metres.
pub fn metres(a_lat: f64, a_lon: f64, b_lat: f64, b_lon: f64) -> f64 {
    Haversine.distance(Point::new(a_lon, a_lat), Point::new(b_lon, b_lat))
}

/// Metres from a point to a fence's boundary: positive outside, negative inside.
pub fn distance_to_fence(fence: &SiteFence, lat: f64, lon: f64) -> f64 {
    match &fence.shape {
        GeofenceShape::Circle { center, radius_m } => {
            metres(lat, lon, center.y, center.x) - radius_m
        }
        GeofenceShape::Polygon(polygon) => {
            let p = Point::new(lon, lat);
            let mut best = f64::INFINITY;
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                let d = match ring.closest_point(&p) {
                    Closest::Intersection(_) => 0.0,
                    Closest::SinglePoint(q) => Haversine.distance(p, q),
                    Closest::Indeterminate => f64::INFINITY,
                };
                best = best.min(d);
            }
            if polygon.contains(&Coord { x: lon, y: lat }) {
                -best
            } else {
                best
            }
        }
    }
}

/// Where a fix stands relative to a fence, its accuracy taken into account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FenceSide {
    /// The point itself is inside.
    Inside,
    /// Even the accuracy circle is wholly outside, this far from the fence.
    Outside(f64),
    /// The accuracy circle straddles the fence: no decision.
    Uncertain,
}

/// Classifies a fix against a fence.
pub fn side_of(fence: &SiteFence, lat: f64, lon: f64, accuracy_m: f64) -> FenceSide {
    if fence.contains(lat, lon) {
        return FenceSide::Inside;
    }
    let d = distance_to_fence(fence, lat, lon);
    if d > accuracy_m {
        FenceSide::Outside(d)
    } else {
        FenceSide::Uncertain
    }
}

/// What the dwell rules decided for one fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FenceTransition {
    /// The agent has left: open a violation that started at `since`.
    Exit {
        since: DateTime<Utc>,
        distance_m: f64,
    },
    /// The agent is back: close the open violation.
    Enter { at: DateTime<Utc> },
}

/// The dwell state machine of one agent on one site.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FenceWatch {
    /// Inside (or not yet known to be outside).
    #[default]
    Inside,
    /// Outside since `since`, for `fixes` consecutive trusted fixes; no alarm yet.
    Leaving { since: DateTime<Utc>, fixes: u32 },
    /// A violation is open.
    Violated,
}

impl FenceWatch {
    /// Feeds one trusted fix's side; returns a transition when one happens.
    pub fn observe(
        &mut self,
        side: FenceSide,
        ts: DateTime<Utc>,
        rules: &GeofenceSettings,
    ) -> Option<FenceTransition> {
        match (side, *self) {
            (FenceSide::Uncertain, _) => None,
            (FenceSide::Inside, FenceWatch::Violated) => {
                *self = FenceWatch::Inside;
                Some(FenceTransition::Enter { at: ts })
            }
            (FenceSide::Inside, _) => {
                *self = FenceWatch::Inside;
                None
            }
            (FenceSide::Outside(_), FenceWatch::Violated) => None,
            (FenceSide::Outside(d), state) => {
                let (since, fixes) = match state {
                    FenceWatch::Leaving { since, fixes } => (since, fixes + 1),
                    _ => (ts, 1),
                };
                let dwelt = (ts - since).num_seconds() >= rules.exit_dwell_s;
                if fixes >= rules.exit_consecutive_fixes
                    || (dwelt && fixes >= 2)
                    || rules.exit_dwell_s == 0
                {
                    *self = FenceWatch::Violated;
                    Some(FenceTransition::Exit {
                        since,
                        distance_m: d,
                    })
                } else {
                    *self = FenceWatch::Leaving { since, fixes };
                    None
                }
            }
        }
    }
}

/// The shift an agent is clocked in on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duty {
    pub attendance_id: Uuid,
    pub shift_id: Uuid,
    pub site_id: Uuid,
    pub on_break: bool,
}

/// The last trusted fix, for the implied-speed check.
#[derive(Debug, Clone, Copy)]
pub struct LastFix {
    pub ts: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
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
    use std::sync::Arc;

    use chrono::Duration;
    use serde_json::json;

    use super::*;
    use crate::domain::geofence::GeofenceSpec;

    fn fence(geojson: serde_json::Value) -> Arc<SiteFence> {
        Arc::new(SiteFence {
            site_id: Uuid::nil(),
            client_id: Uuid::nil(),
            version: 1,
            shape: GeofenceSpec::parse(&geojson).unwrap().shape,
        })
    }

    fn rules() -> GeofenceSettings {
        GeofenceSettings {
            exit_dwell_s: 30,
            exit_consecutive_fixes: 5,
        }
    }

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
    fn distances_to_fences() {
        let circle = fence(json!({"type": "Circle", "center": [1.0, 6.0], "radius_m": 100}));
        let d = distance_to_fence(&circle, 6.0 + 200.0 / 111_195.0, 1.0);
        assert!((d - 100.0).abs() < 1.0, "{d}");
        let square = fence(
            json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.01, 6.0], [1.01, 6.01], [1.0, 6.01], [1.0, 6.0]]]}),
        );
        let outside = distance_to_fence(&square, 6.005, 1.0 - 0.001);
        assert!((outside - 110.6).abs() < 2.0, "{outside}");
        assert!(distance_to_fence(&square, 6.005, 1.005) < -500.0);
        assert_eq!(side_of(&square, 6.005, 1.005, 10.0), FenceSide::Inside);
        assert!(matches!(
            side_of(&square, 6.005, 0.999, 50.0),
            FenceSide::Outside(_)
        ));
        assert_eq!(
            side_of(&square, 6.005, 0.999, 150.0),
            FenceSide::Uncertain,
            "accuracy circle straddles"
        );
    }

    #[test]
    fn dwell_rules_ignore_drift_and_open_once() {
        let t0 = Utc::now();
        let mut w = FenceWatch::default();
        let out = FenceSide::Outside(40.0);
        assert_eq!(w.observe(out, t0, &rules()), None);
        assert_eq!(
            w.observe(FenceSide::Inside, t0 + Duration::seconds(5), &rules()),
            None,
            "drift"
        );
        assert_eq!(w.observe(out, t0 + Duration::seconds(10), &rules()), None);
        assert_eq!(
            w.observe(FenceSide::Uncertain, t0 + Duration::seconds(20), &rules()),
            None
        );
        let opened = w.observe(out, t0 + Duration::seconds(41), &rules());
        assert_eq!(
            opened,
            Some(FenceTransition::Exit {
                since: t0 + Duration::seconds(10),
                distance_m: 40.0
            })
        );
        assert_eq!(
            w.observe(out, t0 + Duration::seconds(50), &rules()),
            None,
            "one violation"
        );
        assert_eq!(
            w.observe(FenceSide::Inside, t0 + Duration::seconds(60), &rules()),
            Some(FenceTransition::Enter {
                at: t0 + Duration::seconds(60)
            })
        );
        // Five quick consecutive fixes also open one.
        let mut w = FenceWatch::default();
        let opened: Vec<_> = (0..5)
            .filter_map(|i| w.observe(out, t0 + Duration::seconds(i), &rules()))
            .collect();
        assert_eq!(opened.len(), 1);
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
