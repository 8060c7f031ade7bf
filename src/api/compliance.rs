//! `GET /api/v1/reports/compliance`: were the tours walked? Per site, shift or agent over a
//! period: rounds expected, completed, partial and missed; checkpoints on time, out of order,
//! late and missed; scans of other sites' checkpoints; and the share of checkpoints scanned within their round's window. JSON, or
//! CSV with `Accept: text/csv`. Only judged rounds count (their window has closed); one
//! grouped query over `tour_rounds_opens_at_idx` (docs/performance.md has its timing).

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    api::{
        auth::Cx,
        error::{ApiError, ApiResult, ErrorBody},
        list::SqlBuilder,
        validate,
    },
    domain::enums::UserRole,
    storage::row::RowExt,
};

/// The longest period one report covers.
const MAX_DAYS: i64 = 366;

/// What the rows are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Site,
    Shift,
    Agent,
}

/// `GET /api/v1/reports/compliance` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ComplianceQuery {
    /// Rounds opening at or after (required).
    pub from: DateTime<Utc>,
    /// Rounds opening before (required; at most 366 days after `from`).
    pub to: DateTime<Utc>,
    /// site (default), shift or agent.
    pub group_by: Option<GroupBy>,
    pub site_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
}

/// One row of the report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceRow {
    pub site_id: Uuid,
    pub site_name: String,
    /// With `group_by=shift`.
    pub shift_id: Option<Uuid>,
    /// With `group_by=shift` (the shift's agent) and `group_by=agent`.
    pub agent_id: Option<Uuid>,
    pub agent_name: Option<String>,
    pub rounds_expected: i64,
    pub rounds_completed: i64,
    pub rounds_partial: i64,
    pub rounds_missed: i64,
    pub checkpoints_expected: i64,
    pub checkpoints_on_time: i64,
    pub checkpoints_out_of_order: i64,
    pub checkpoints_late: i64,
    pub checkpoints_missed: i64,
    /// Scans of another site's checkpoints during the rounds' windows.
    pub wrong_site_scans: i64,
    /// Checkpoints scanned within their round's window (on time or out of order), in % of
    /// those expected; null when none were expected.
    pub percentage: Option<f64>,
}

/// The report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    pub rows: Vec<ComplianceRow>,
}

/// Tour compliance over a period (ADMIN, SUPERVISOR; CLIENT users for their sites).
#[utoipa::path(get, path = "/api/v1/reports/compliance", tag = "reports", params(ComplianceQuery), security(("bearer" = [])),
    responses((status = 200, body = ComplianceReport, description = "JSON, or CSV with Accept: text/csv"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn compliance(
    Cx { state, caller }: Cx,
    req: HttpRequest,
    q: web::Query<ComplianceQuery>,
) -> ApiResult {
    let mut w = SqlBuilder::default();
    match caller.role {
        UserRole::Admin | UserRole::Supervisor => {}
        UserRole::Client => w.push("s.client_id = {}", caller.client_id.unwrap_or_default()),
        UserRole::Agent => return Err(ApiError::forbidden("read compliance reports")),
    }
    validate::ordered("from", q.from, "to", q.to)?;
    if (q.to - q.from).num_days() > MAX_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    let group_by = q.group_by.unwrap_or(GroupBy::Site);
    w.push("r.opens_at >= {}", q.from);
    w.push("r.opens_at < {}", q.to);
    w.raw("r.status <> 'OPEN'");
    if let Some(v) = q.site_id {
        w.push("r.site_id = {}", v);
    }
    if let Some(v) = q.agent_id {
        w.push("r.agent_id = {}", v);
    }
    let (keys, group) = match group_by {
        GroupBy::Site => (
            "NULL::uuid AS shift_id, NULL::uuid AS agent_id",
            "s.id, s.name",
        ),
        GroupBy::Shift => (
            "r.shift_id AS shift_id, min(r.agent_id::text)::uuid AS agent_id",
            "s.id, s.name, r.shift_id",
        ),
        GroupBy::Agent => (
            "NULL::uuid AS shift_id, r.agent_id AS agent_id",
            "s.id, s.name, r.agent_id",
        ),
    };
    let sql = format!(
        "WITH g AS (
             SELECT s.id AS site_id, s.name AS site_name, {keys},
                    count(*) AS rounds_expected,
                    count(*) FILTER (WHERE r.status = 'COMPLETED') AS rounds_completed,
                    count(*) FILTER (WHERE r.status = 'PARTIAL') AS rounds_partial,
                    count(*) FILTER (WHERE r.status = 'MISSED') AS rounds_missed,
                    sum(r.expected)::int8 AS checkpoints_expected,
                    sum(r.on_time)::int8 AS checkpoints_on_time,
                    sum(r.out_of_order)::int8 AS checkpoints_out_of_order,
                    sum(r.late)::int8 AS checkpoints_late,
                    sum(r.missed)::int8 AS checkpoints_missed,
                    sum(r.wrong_site)::int8 AS wrong_site_scans
             FROM tour_rounds r JOIN sites s ON s.id = r.site_id
             WHERE {}
             GROUP BY {group})
         SELECT g.*, NULLIF(concat_ws(' ', u.first_name, u.last_name), '') AS agent_name
         FROM g LEFT JOIN agents ag ON ag.id = g.agent_id LEFT JOIN users u ON u.id = ag.user_id
         ORDER BY g.site_name, g.site_id, agent_name, g.shift_id",
        w.where_clause()
    );
    let rows = state.pool.get().await?.query(&sql, &w.refs()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let expected: i64 = r.col("checkpoints_expected")?;
        let on_time: i64 = r.col("checkpoints_on_time")?;
        let ooo: i64 = r.col("checkpoints_out_of_order")?;
        out.push(ComplianceRow {
            site_id: r.col("site_id")?,
            site_name: r.col("site_name")?,
            shift_id: r.col("shift_id")?,
            agent_id: r.col("agent_id")?,
            agent_name: r.col("agent_name")?,
            rounds_expected: r.col("rounds_expected")?,
            rounds_completed: r.col("rounds_completed")?,
            rounds_partial: r.col("rounds_partial")?,
            rounds_missed: r.col("rounds_missed")?,
            checkpoints_expected: expected,
            checkpoints_on_time: on_time,
            checkpoints_out_of_order: ooo,
            checkpoints_late: r.col("checkpoints_late")?,
            checkpoints_missed: r.col("checkpoints_missed")?,
            wrong_site_scans: r.col("wrong_site_scans")?,
            percentage: (expected > 0)
                .then(|| ((on_time + ooo) as f64 * 1000.0 / expected as f64).round() / 10.0),
        });
    }
    let wants_csv = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"compliance.csv\"",
            ))
            .body(to_csv(&out)));
    }
    Ok(HttpResponse::Ok().json(ComplianceReport {
        from: q.from,
        to: q.to,
        group_by,
        rows: out,
    }))
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so that spreadsheets do not run it as a formula.
fn field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn to_csv(rows: &[ComplianceRow]) -> String {
    let mut out = String::from(
        "site_id,site_name,shift_id,agent_id,agent_name,rounds_expected,rounds_completed,rounds_partial,rounds_missed,checkpoints_expected,checkpoints_on_time,checkpoints_out_of_order,checkpoints_late,checkpoints_missed,wrong_site_scans,percentage\r\n",
    );
    let opt = |v: Option<Uuid>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let cells = [
            r.site_id.to_string(),
            field(&r.site_name),
            opt(r.shift_id),
            opt(r.agent_id),
            field(r.agent_name.as_deref().unwrap_or("")),
            r.rounds_expected.to_string(),
            r.rounds_completed.to_string(),
            r.rounds_partial.to_string(),
            r.rounds_missed.to_string(),
            r.checkpoints_expected.to_string(),
            r.checkpoints_on_time.to_string(),
            r.checkpoints_out_of_order.to_string(),
            r.checkpoints_late.to_string(),
            r.checkpoints_missed.to_string(),
            r.wrong_site_scans.to_string(),
            r.percentage.map(|p| format!("{p:.1}")).unwrap_or_default(),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("North gate"), "North gate");
        assert_eq!(field("A, B"), "\"A, B\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
    }
}
