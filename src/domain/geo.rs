//! Distances on the Earth, shared by the ingest checks, the geofence watch and the
//! dispatcher's nearest-agent searches.

use geo::{Distance, Haversine, Point};

/// Mean Earth radius in metres (the one `geo`'s haversine uses), for unit-sphere maths.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two (lat, lon) points in degrees.
pub fn metres(a_lat: f64, a_lon: f64, b_lat: f64, b_lon: f64) -> f64 {
    Haversine.distance(Point::new(a_lon, a_lat), Point::new(b_lon, b_lat))
}

/// A point as a unit vector in 3-D: Euclidean nearest neighbours in an R-tree of these are
/// great-circle nearest neighbours, with no trouble at the antimeridian or the poles.
pub fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (la, lo) = (lat.to_radians(), lon.to_radians());
    [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degree_of_latitude_is_about_111_km() {
        let d = metres(6.0, 1.0, 7.0, 1.0);
        assert!((d - 111_195.0).abs() < 50.0, "{d}");
        let v = unit_vector(0.0, 90.0);
        assert!(v[0].abs() < 1e-12 && (v[1] - 1.0).abs() < 1e-12 && v[2].abs() < 1e-12);
    }
}
