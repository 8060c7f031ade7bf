//! Where an agent stands against its duty site's fence, and the dwell rules that turn a
//! run of fixes outside into one violation (and a fix back inside into its end). Pure and
//! synchronous: it runs for every trusted fix of an agent on duty.

use chrono::{DateTime, Utc};
use geo::{Closest, ClosestPoint, Contains, Coord, Distance, Haversine, Point};

use crate::{
    configuration::GeofenceSettings,
    domain::{geo::metres, geofence::GeofenceShape},
    geofence::SiteFence,
};

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

/// A crossing of the fence, as devices and consoles are told (`geofence` frame and event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceEvent {
    /// Left the fence (a violation opens).
    Exit,
    /// Back inside (the violation closes).
    Enter,
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

impl FenceTransition {
    /// The crossing and the distance outside (0 when back in).
    pub fn event(&self) -> (FenceEvent, f64) {
        match *self {
            FenceTransition::Exit { distance_m, .. } => (FenceEvent::Exit, distance_m),
            FenceTransition::Enter { .. } => (FenceEvent::Enter, 0.0),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;
    use serde_json::json;
    use uuid::Uuid;

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
}
