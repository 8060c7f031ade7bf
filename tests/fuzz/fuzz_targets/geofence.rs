//! A site's GeoJSON fence (REST body or import): parsed, or refused with a message; a parsed
//! fence answers "is this point inside" for any point without panicking.
#![no_main]

use std::sync::Arc;

use bahinlink::{
    domain::geofence::GeofenceSpec,
    geofence::{FenceSnapshot, SiteFence},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match GeofenceSpec::parse(&value) {
        Ok(spec) => {
            let fence = Arc::new(SiteFence {
                site_id: Default::default(),
                client_id: Default::default(),
                version: 1,
                shape: spec.shape,
            });
            let (lat, lon) = fence.centre();
            assert!(lat.is_finite() && lon.is_finite());
            let snapshot = FenceSnapshot::build(vec![fence.clone()]);
            for (lat, lon) in [(lat, lon), (0.0, 0.0), (89.9, 179.9), (-89.9, -179.9)] {
                let _ = fence.contains(lat, lon);
                let _ = snapshot.containing(lat, lon).count();
            }
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
});
