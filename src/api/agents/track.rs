//! `GET /api/v1/agents/{id}/track?from=&to=`: where an agent went, as a GeoJSON LineString
//! of its trusted fixes in the device's order (for a CLIENT user, only those at its sites). Read backwards along `location_tracking`'s key
//! `(agent_id, seq)` a page at a time from the newest row, stopping once the rows are older
//! than `from`: the work is the rows since `from`, however long the agent's history.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::readable;
use crate::{
    api::{
        auth::Cx,
        error::{ApiError, ApiResult, ErrorBody},
        validate,
    },
    domain::enums::UserRole,
    storage::row::RowExt,
};

/// Rows read per page.
const PAGE: i64 = 2000;
/// Longest window one request may ask for.
const MAX_WINDOW: Duration = Duration::hours(24);
/// Most points in one answer (a day at one fix every two seconds, with room).
const MAX_POINTS: usize = 50_000;
/// Device order is mostly time order; resent or buffered events may be this much older than
/// their neighbours, so the reading goes on this far past `from`.
const REORDER_SLACK: Duration = Duration::minutes(10);

/// The window of `GET /api/v1/agents/{id}/track`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TrackQuery {
    /// Start of the window (inclusive).
    pub from: DateTime<Utc>,
    /// End of the window (exclusive); at most 24 hours after `from`.
    pub to: DateTime<Utc>,
}

/// A GeoJSON Feature whose geometry is the track.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Track {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: String,
    pub geometry: TrackGeometry,
    pub properties: TrackProperties,
}

/// A GeoJSON LineString: `[lon, lat]` pairs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackGeometry {
    /// Always `LineString`.
    #[serde(rename = "type")]
    pub kind: String,
    pub coordinates: Vec<[f64; 2]>,
}

/// What the track is of.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackProperties {
    pub agent_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Device time of each point, in the same order as the coordinates.
    pub times: Vec<DateTime<Utc>>,
    /// True when the window held more than the answer's limit (the newest points are kept).
    pub truncated: bool,
}

/// A fix on the line: its time and `[lon, lat]`.
type Point = (DateTime<Utc>, [f64; 2]);

/// A row's point on the line: a trusted fix in the window, at one of the caller's sites when
/// the caller is a CLIENT user (`only_sites`); None otherwise.
fn drawn(
    r: &tokio_postgres::Row,
    q: &TrackQuery,
    only_sites: Option<&std::collections::HashSet<Uuid>>,
) -> Result<Option<Point>, crate::storage::row::ColumnError> {
    let ts: DateTime<Utc> = r.col("ts")?;
    let (Some(lat), Some(lon)) = (r.col::<Option<f64>>("lat")?, r.col::<Option<f64>>("lon")?)
    else {
        return Ok(None);
    };
    let trusted: bool = r.col("is_trusted")?;
    let site: Option<Uuid> = r.col("site_id")?;
    let visible = only_sites.is_none_or(|sites| site.is_some_and(|s| sites.contains(&s)));
    Ok((trusted && visible && ts >= q.from && ts < q.to).then_some((ts, [lon, lat])))
}

/// The track of one agent over a window (staff: any agent; CLIENT: agents with a shift at its
/// sites; AGENT: itself).
#[utoipa::path(get, path = "/api/v1/agents/{id}/track", tag = "agents", params(("id" = Uuid, Path, description = "agent id"), TrackQuery), security(("bearer" = [])),
    responses((status = 200, body = Track), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn track(
    Cx { state, caller }: Cx,
    id: web::Path<Uuid>,
    q: web::Query<TrackQuery>,
) -> ApiResult {
    let id = id.into_inner();
    validate::ordered("from", q.from, "to", q.to)?;
    if q.to - q.from > MAX_WINDOW {
        return Err(ApiError::invalid("to", "the window is at most 24 hours"));
    }
    let db = state.pool.get().await?;
    let mut w = readable(&caller);
    w.push("a.id = {}", id);
    let sql = format!("SELECT 1 FROM agents a WHERE {}", w.where_clause());
    db.query_opt(&sql, &w.refs())
        .await?
        .ok_or_else(|| ApiError::not_found_id("agent", id))?;
    let statement = db
        .prepare_cached(
            "SELECT seq, lat, lon, \"timestamp\" AS ts, is_trusted, site_id FROM location_tracking
             WHERE agent_id = $1 AND seq < $2 AND seq >= 0 ORDER BY seq DESC LIMIT $3",
        )
        .await?;
    // A CLIENT user sees the agent only where it worked for the client: fixes at its sites.
    let only_sites = (caller.role == UserRole::Client).then(|| {
        state
            .geofences
            .snapshot()
            .sites_of_client(caller.client_id.unwrap_or_default())
    });
    let stop = q.from - REORDER_SLACK;
    let mut cursor = i64::MAX;
    // Newest first while reading; reversed at the end.
    let mut points: Vec<Point> = Vec::new();
    let mut truncated = false;
    'pages: loop {
        let rows = db.query(&statement, &[&id, &cursor, &PAGE]).await?;
        let Some(last) = rows.last() else { break };
        cursor = last.col("seq")?;
        let mut older = true;
        for r in &rows {
            let ts: DateTime<Utc> = r.col("ts")?;
            if ts >= stop {
                older = false;
            }
            if let Some(point) = drawn(r, &q, only_sites.as_ref())? {
                if points.len() == MAX_POINTS {
                    truncated = true;
                    break 'pages;
                }
                points.push(point);
            }
        }
        if older || (rows.len() as i64) < PAGE {
            break;
        }
    }
    // Phone apps' fixes (HTTP gateway) are numbered by fix time below zero: the window is an
    // index range of their positions and one of their panics (region transitions are never
    // trusted, so never drawn).
    if !truncated {
        use crate::gateway::report::{app_seq_range, AppEvent};
        let (p0, p1) = app_seq_range(stop, q.to, AppEvent::Position);
        let (s0, s1) = app_seq_range(stop, q.to, AppEvent::Panic);
        let app = db
            .prepare_cached(
                "SELECT seq, lat, lon, \"timestamp\" AS ts, is_trusted, site_id FROM location_tracking
                 WHERE agent_id = $1 AND (seq BETWEEN $2 AND $3 OR seq BETWEEN $4 AND $5)",
            )
            .await?;
        let before = points.len();
        for r in db.query(&app, &[&id, &p0, &p1, &s0, &s1]).await? {
            if let Some(point) = drawn(&r, &q, only_sites.as_ref())? {
                if points.len() == MAX_POINTS {
                    truncated = true;
                    break;
                }
                points.push(point);
            }
        }
        // Both kinds of devices in one line, by time (newest first, as read); a WebSocket-only
        // track keeps the device's order.
        if points.len() > before {
            points.sort_by_key(|p| std::cmp::Reverse(p.0));
        }
    }
    points.reverse();
    let (times, coordinates) = points.into_iter().unzip();
    Ok(HttpResponse::Ok().json(Track {
        kind: "Feature".into(),
        geometry: TrackGeometry {
            kind: "LineString".into(),
            coordinates,
        },
        properties: TrackProperties {
            agent_id: id,
            from: q.from,
            to: q.to,
            times,
            truncated,
        },
    }))
}
