//! The in-memory geofence index: every active site's fence in an R-tree, published as an
//! immutable snapshot behind an `ArcSwap`. Readers (the per-event hot path) load the current
//! snapshot without locks and never wait on a writer or on the database; a site change
//! through the API builds a new snapshot and swaps it in atomically.

pub mod watch;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use geo::{Contains, Coord, Distance, Haversine, Point, Polygon};
use rstar::{primitives::GeomWithData, primitives::Rectangle, RTree};
use uuid::Uuid;

use crate::domain::geofence::{GeofenceShape, GeofenceSpec};

/// Metres per degree of latitude (mean).
const METRES_PER_DEGREE: f64 = 111_320.0;

/// One site's fence as the index holds it.
#[derive(Debug, Clone)]
pub struct SiteFence {
    /// sites.id
    pub site_id: Uuid,
    /// sites.client_id (console scoping).
    pub client_id: Uuid,
    /// sites.geofence_version this entry was built from.
    pub version: i32,
    /// The shape in lon/lat degrees.
    pub shape: GeofenceShape,
}

impl SiteFence {
    /// Whether the point lies inside the fence (boundary counts as inside for circles).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        match &self.shape {
            GeofenceShape::Polygon(p) => p.contains(&Coord { x: lon, y: lat }),
            GeofenceShape::Circle { center, radius_m } => {
                Haversine.distance(Point::from(*center), Point::new(lon, lat)) <= *radius_m
            }
        }
    }

    /// The fence's centre (lat, lon): a circle's centre, a polygon's centroid.
    pub fn centre(&self) -> (f64, f64) {
        match &self.shape {
            GeofenceShape::Circle { center, .. } => (center.y, center.x),
            GeofenceShape::Polygon(p) => {
                use geo::Centroid;
                p.centroid().map_or_else(
                    || (p.exterior().0[0].y, p.exterior().0[0].x),
                    |c| (c.y(), c.x()),
                )
            }
        }
    }

    /// Bounding box [min_lon, min_lat] .. [max_lon, max_lat].
    fn envelope(&self) -> ([f64; 2], [f64; 2]) {
        match &self.shape {
            GeofenceShape::Polygon(p) => bbox(p),
            GeofenceShape::Circle { center, radius_m } => {
                let dlat = radius_m / METRES_PER_DEGREE;
                let cos = center.y.to_radians().cos().max(0.01);
                let dlon = radius_m / (METRES_PER_DEGREE * cos);
                (
                    [center.x - dlon, center.y - dlat],
                    [center.x + dlon, center.y + dlat],
                )
            }
        }
    }
}

fn bbox(p: &Polygon<f64>) -> ([f64; 2], [f64; 2]) {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    for c in p.exterior().coords() {
        min = [min[0].min(c.x), min[1].min(c.y)];
        max = [max[0].max(c.x), max[1].max(c.y)];
    }
    (min, max)
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// One immutable generation of the index.
#[derive(Default)]
pub struct FenceSnapshot {
    /// Envelopes, each pointing into `fences`.
    tree: RTree<Entry>,
    /// The fences, by position.
    fences: Vec<Arc<SiteFence>>,
    /// Position of each site in `fences`.
    by_site: HashMap<Uuid, u32>,
}

impl FenceSnapshot {
    /// Builds a snapshot from fences (bulk-loaded R-tree).
    pub fn build(fences: Vec<Arc<SiteFence>>) -> Self {
        let entries = fences
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (lo, hi) = f.envelope();
                GeomWithData::new(Rectangle::from_corners(lo, hi), i as u32)
            })
            .collect();
        let by_site = fences
            .iter()
            .enumerate()
            .map(|(i, f)| (f.site_id, i as u32))
            .collect();
        FenceSnapshot {
            tree: RTree::bulk_load(entries),
            fences,
            by_site,
        }
    }

    /// Fences whose shape contains the point: envelope candidates first, then exact tests.
    pub fn containing(&self, lat: f64, lon: f64) -> impl Iterator<Item = &Arc<SiteFence>> + '_ {
        self.tree
            .locate_all_at_point(&[lon, lat])
            .map(|e| &self.fences[e.data as usize])
            .filter(move |f| f.contains(lat, lon))
    }

    /// The fence of one site.
    pub fn site(&self, site_id: Uuid) -> Option<&Arc<SiteFence>> {
        self.by_site
            .get(&site_id)
            .map(|&i| &self.fences[i as usize])
    }

    /// Ids of the active sites of one client.
    pub fn sites_of_client(&self, client_id: Uuid) -> std::collections::HashSet<Uuid> {
        self.fences
            .iter()
            .filter(|f| f.client_id == client_id)
            .map(|f| f.site_id)
            .collect()
    }

    /// Number of fences.
    pub fn len(&self) -> usize {
        self.fences.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }
}

/// The live index shared by the API (writer) and the agent sessions (readers).
#[derive(Default)]
pub struct GeofenceIndex {
    /// The current generation.
    current: ArcSwap<FenceSnapshot>,
    /// Serialises writers so that two concurrent site updates cannot lose one another.
    writer: tokio::sync::Mutex<()>,
    /// Whether every site has been read once (readiness waits for it: until then fences are
    /// unknown and clock-ins would be refused as outside).
    loaded: std::sync::atomic::AtomicBool,
}

/// Why the index was not (re)loaded: the previous snapshot stays in place.
pub use crate::storage::DbError as GeofenceLoadError;

const ACTIVE_SITES: &str = "SELECT id, client_id, geofence_version, geofence FROM sites
                            WHERE deleted_at IS NULL AND status = 'ACTIVE'";

fn fence_from_row(row: &tokio_postgres::Row) -> Option<Arc<SiteFence>> {
    let columns = (
        row.try_get::<_, Uuid>("id"),
        row.try_get::<_, Uuid>("client_id"),
        row.try_get::<_, i32>("geofence_version"),
        row.try_get::<_, serde_json::Value>("geofence"),
    );
    let (Ok(site_id), Ok(client_id), Ok(version), Ok(raw)) = columns else {
        tracing::error!(?columns, "skipping a site row of unexpected shape");
        return None;
    };
    match GeofenceSpec::parse(&raw) {
        Ok(spec) => Some(Arc::new(SiteFence {
            site_id,
            client_id,
            version,
            shape: spec.shape,
        })),
        Err(e) => {
            // Stored fences were validated on the way in; one that no longer parses (written
            // by hand, or by another tool) is skipped, and said loudly, rather than taking the
            // daemon down.
            tracing::error!(%site_id, error = %e, "skipping invalid stored geofence");
            None
        }
    }
}

impl GeofenceIndex {
    /// The current snapshot: a lock-free load, cheap enough for every event.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<FenceSnapshot>> {
        self.current.load()
    }

    /// Whether the whole index has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the whole index with every active site of the database.
    pub async fn load_all(
        &self,
        pool: &deadpool_postgres::Pool,
    ) -> Result<usize, GeofenceLoadError> {
        let _w = self.writer.lock().await;
        let rows = pool.get().await?.query(ACTIVE_SITES, &[]).await?;
        let fences: Vec<_> = rows.iter().filter_map(fence_from_row).collect();
        let n = fences.len();
        self.current.store(Arc::new(FenceSnapshot::build(fences)));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(n)
    }

    /// Re-reads some sites (a burst of changes from the database's change feed) and publishes
    /// one new snapshot with them added, changed or removed.
    pub async fn reload_sites(
        &self,
        pool: &deadpool_postgres::Pool,
        site_ids: &[Uuid],
    ) -> Result<(), GeofenceLoadError> {
        if site_ids.is_empty() {
            return Ok(());
        }
        let _w = self.writer.lock().await;
        let rows = pool
            .get()
            .await?
            .query(&format!("{ACTIVE_SITES} AND id = ANY($1)"), &[&site_ids])
            .await?;
        let changed: std::collections::HashSet<Uuid> = site_ids.iter().copied().collect();
        let current = self.current.load_full();
        let mut fences: Vec<Arc<SiteFence>> = current
            .fences
            .iter()
            .filter(|f| !changed.contains(&f.site_id))
            .cloned()
            .collect();
        fences.extend(rows.iter().filter_map(fence_from_row));
        self.current.store(Arc::new(FenceSnapshot::build(fences)));
        Ok(())
    }

    /// Re-reads one site (after an API change) and publishes a new snapshot with it added,
    /// changed or removed.
    pub async fn reload_site(
        &self,
        pool: &deadpool_postgres::Pool,
        site_id: Uuid,
    ) -> Result<(), GeofenceLoadError> {
        let _w = self.writer.lock().await;
        let row = pool
            .get()
            .await?
            .query_opt(&format!("{ACTIVE_SITES} AND id = $1"), &[&site_id])
            .await?;
        let current = self.current.load_full();
        let mut fences: Vec<Arc<SiteFence>> = current
            .fences
            .iter()
            .filter(|f| f.site_id != site_id)
            .cloned()
            .collect();
        if let Some(fence) = row.as_ref().and_then(fence_from_row) {
            fences.push(fence);
        }
        self.current.store(Arc::new(FenceSnapshot::build(fences)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fence(id: u128, geojson: serde_json::Value) -> Arc<SiteFence> {
        Arc::new(SiteFence {
            site_id: Uuid::from_u128(id),
            client_id: Uuid::nil(),
            version: 1,
            shape: GeofenceSpec::parse(&geojson).unwrap().shape,
        })
    }

    #[test]
    fn finds_polygons_and_circles_exactly() {
        let square = fence(
            1,
            json!({"type": "Polygon", "coordinates": [[[1.0, 6.0], [1.01, 6.0], [1.01, 6.01], [1.0, 6.01], [1.0, 6.0]]]}),
        );
        // 100 m circle around (6.1, 1.1).
        let circle = fence(
            2,
            json!({"type": "Circle", "center": [1.1, 6.1], "radius_m": 100}),
        );
        let snap = FenceSnapshot::build(vec![square, circle]);
        let ids = |lat, lon| {
            snap.containing(lat, lon)
                .map(|f| f.site_id.as_u128())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(6.005, 1.005), vec![1]);
        assert_eq!(ids(6.1, 1.1), vec![2]);
        // ~90 m north of the centre: inside; ~120 m: inside the envelope's corner region
        // tests are exact, so outside.
        assert_eq!(ids(6.1 + 90.0 / METRES_PER_DEGREE, 1.1), vec![2]);
        assert!(ids(6.1 + 120.0 / METRES_PER_DEGREE, 1.1).is_empty());
        // In the envelope's corner but outside the circle.
        assert!(ids(6.1 + 0.0008, 1.1 + 0.0008).is_empty());
        assert!(ids(0.5, 0.5).is_empty());
        assert!(snap.site(Uuid::from_u128(2)).is_some());
    }
}
