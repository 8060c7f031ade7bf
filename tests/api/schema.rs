//! Schema conformance: what the migrations create, read back from the PostgreSQL catalog.

use std::collections::{BTreeMap, BTreeSet};

use bahinlink::storage::migrate::{self, MigrationState};

use crate::helpers::{connect, fresh_database};

const SEED_TABLES: [&str; 23] = [
    "users",
    "agents",
    "clients",
    "api_keys",
    "sites",
    "geofence_validations",
    "geofence_violations",
    "shifts",
    "shift_assignments",
    "attendance",
    "time_off_requests",
    "location_tracking",
    "qr_codes",
    "qr_code_scans",
    "reports",
    "report_templates",
    "report_workflows",
    "media_files",
    "notifications",
    "messages",
    "client_requests",
    "audit_logs",
    "system_configurations",
];

const SEED_ENUMS: [(&str, &[&str]); 15] = [
    ("UserRole", &["ADMIN", "SUPERVISOR", "AGENT", "CLIENT"]),
    (
        "UserStatus",
        &["ACTIVE", "INACTIVE", "SUSPENDED", "PENDING"],
    ),
    (
        "AgentStatus",
        &["ACTIVE", "INACTIVE", "ON_LEAVE", "TERMINATED"],
    ),
    (
        "ClientStatus",
        &["ACTIVE", "INACTIVE", "SUSPENDED", "TERMINATED"],
    ),
    (
        "ShiftType",
        &["REGULAR", "OVERTIME", "EMERGENCY", "TRAINING"],
    ),
    (
        "ShiftStatus",
        &[
            "SCHEDULED",
            "CONFIRMED",
            "IN_PROGRESS",
            "COMPLETED",
            "CANCELLED",
            "NO_SHOW",
        ],
    ),
    ("AttendanceMethod", &["GPS", "QR_CODE", "MANUAL", "NFC"]),
    (
        "AttendanceStatus",
        &["CLOCKED_IN", "ON_BREAK", "CLOCKED_OUT", "INCOMPLETE"],
    ),
    (
        "ReportType",
        &[
            "PATROL",
            "INCIDENT",
            "INSPECTION",
            "MAINTENANCE",
            "EMERGENCY",
        ],
    ),
    (
        "ReportStatus",
        &[
            "DRAFT",
            "SUBMITTED",
            "UNDER_REVIEW",
            "APPROVED",
            "REJECTED",
            "ARCHIVED",
        ],
    ),
    ("ReportPriority", &["LOW", "NORMAL", "HIGH", "CRITICAL"]),
    (
        "NotificationType",
        &["INFO", "WARNING", "URGENT", "EMERGENCY", "SYSTEM"],
    ),
    (
        "MessageType",
        &["TEXT", "IMAGE", "VIDEO", "LOCATION", "FILE"],
    ),
    ("Priority", &["LOW", "NORMAL", "HIGH", "URGENT", "CRITICAL"]),
    (
        "AssignmentMethod",
        &["MANUAL", "AUTO", "INTELLIGENT_AUTO", "EMERGENCY_AUTO"],
    ),
];

const SEED_INDEXES: [&str; 33] = [
    "users_role_idx",
    "users_status_idx",
    "users_last_login_at_idx",
    "users_created_at_idx",
    "agents_employment_status_idx",
    "agents_hire_date_idx",
    "agents_created_at_idx",
    "sites_client_id_idx",
    "sites_status_idx",
    "sites_site_type_idx",
    "sites_created_at_idx",
    "shifts_site_id_idx",
    "shifts_agent_id_idx",
    "shifts_status_idx",
    "shifts_start_time_idx",
    "shifts_end_time_idx",
    "shifts_shift_type_idx",
    "shifts_priority_idx",
    "attendance_shift_id_idx",
    "attendance_agent_id_idx",
    "attendance_status_idx",
    "attendance_clock_in_time_idx",
    "attendance_clock_out_time_idx",
    "location_tracking_agent_id_idx",
    "location_tracking_shift_id_idx",
    "location_tracking_timestamp_idx",
    "reports_shift_id_idx",
    "reports_site_id_idx",
    "reports_agent_id_idx",
    "reports_report_type_idx",
    "reports_status_idx",
    "reports_priority_idx",
    "reports_submitted_at_idx",
];

async fn index_names(client: &tokio_postgres::Client) -> BTreeSet<String> {
    client
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[actix_web::test]
async fn migrations_create_exactly_the_seed_schema() {
    let url = fresh_database(false).await;
    let mut client = connect(&url).await;
    let versions: Vec<i64> = migrate::embedded().iter().map(|m| m.version).collect();
    assert_eq!(
        versions.len(),
        6,
        "the seed's two migrations, the measured location_tracking layout, panic dispatches and the change feed, field operations, the phone-app gateway's numbering"
    );

    // Migration 1 alone, then migration 2: the second creates at least 40 indexes,
    // every one the seed names among them.
    migrate::apply(&mut client, Some(versions[0]))
        .await
        .unwrap();
    let before = index_names(&client).await;
    migrate::apply(&mut client, Some(versions[1]))
        .await
        .unwrap();
    let after = index_names(&client).await;
    let created: BTreeSet<_> = after.difference(&before).cloned().collect();
    assert!(
        created.len() >= 40,
        "second migration creates {} indexes: {created:?}",
        created.len()
    );
    for name in SEED_INDEXES {
        assert!(
            created.contains(name),
            "seed index {name} missing from the second migration"
        );
    }
    let partial: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE '% WHERE %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        partial >= 5,
        "partial indexes for the daemon's own queries: {partial}"
    );
    assert!(
        after.contains("attendance_open_agent_idx"),
        "open attendance per agent"
    );

    // Migration 3 re-lays location_tracking for ingest and keeps every seed index name.
    migrate::apply(&mut client, None).await.unwrap();
    let after = index_names(&client).await;
    for name in SEED_INDEXES {
        assert!(
            after.contains(name),
            "seed index {name} gone after migration 3"
        );
    }
    let key: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = 'location_tracking'::regclass AND i.indisprimary
               AND i.indexrelid = 'location_tracking_agent_id_idx'::regclass
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        key,
        ["agent_id", "seq"],
        "the event identity is the primary key"
    );
    let lt_btrees: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'location_tracking'
               AND indexdef LIKE '%USING btree%' AND indexdef NOT LIKE '% WHERE %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lt_btrees, 1, "one full B-tree on the hottest insert path");

    // Exactly the 23 tables, the bookkeeping table aside.
    let tables: BTreeSet<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|t: &String| t != migrate::BOOKKEEPING_TABLE)
        .collect();
    // The seed's 23, panic_dispatches (migration 20261202100000) and the field operations'
    // six (migration 20261203100000).
    let expected: BTreeSet<String> = SEED_TABLES
        .iter()
        .map(|s| s.to_string())
        .chain(
            [
                "panic_dispatches",
                "tours",
                "tour_checkpoints",
                "tour_rounds",
                "alerts",
                "webhooks",
                "webhook_deliveries",
            ]
            .map(str::to_owned),
        )
        .collect();
    assert_eq!(tables, expected);

    // 26 enum types; the seed's 15 with exactly its labels, in order.
    let rows = client
        .query(
            "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
             FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = 'public' GROUP BY t.typname",
            &[],
        )
        .await
        .unwrap();
    let enums: BTreeMap<String, Vec<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // The seed's 26, the two of panic dispatches (migration 20261202100000) and the four of
    // field operations (migration 20261203100000).
    assert_eq!(enums.len(), 32, "enum types: {:?}", enums.keys());
    for (name, labels) in SEED_ENUMS {
        assert_eq!(
            enums.get(name).map(|v| v.as_slice()),
            Some(&labels.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
            "{name}"
        );
    }
    for extra in [
        "SiteStatus",
        "SiteType",
        "GeofenceShape",
        "ViolationType",
        "ViolationStatus",
        "TimeOffType",
        "TimeOffStatus",
        "RequestStatus",
        "MediaType",
    ] {
        assert!(enums.contains_key(extra), "enum {extra}");
    }

    // At least 32 foreign keys, each with a deliberate ON DELETE rule (never the default
    // NO ACTION), and all three rules in use.
    let fks = client
        .query(
            "SELECT conrelid::regclass::text, conname::text, confdeltype::text FROM pg_constraint
             WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap();
    assert!(fks.len() >= 32, "{} foreign keys", fks.len());
    let mut rules = BTreeSet::new();
    for fk in &fks {
        let rule: String = fk.get(2);
        assert!(
            ["c", "n", "r"].contains(&rule.as_str()),
            "{}.{} has ON DELETE {rule}",
            fk.get::<_, String>(0),
            fk.get::<_, String>(1)
        );
        rules.insert(rule);
    }
    assert_eq!(rules.len(), 3, "CASCADE, SET NULL and RESTRICT all used");

    // UUID primary keys with a database default, on every table.
    let pks = client
        .query(
            "SELECT c.table_name::text, c.data_type::text, c.column_default::text
             FROM information_schema.table_constraints tc
             JOIN information_schema.key_column_usage k
               ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
             JOIN information_schema.columns c
               ON c.table_schema = k.table_schema AND c.table_name = k.table_name AND c.column_name = k.column_name
             WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'
               AND tc.table_name <> '_schema_migrations'",
            &[],
        )
        .await
        .unwrap();
    // location_tracking's key is (agent_id, seq), checked above, and a tour's checkpoints are
    // keyed by (tour_id, position); every other table has a single-column UUID key.
    let pks: Vec<_> = pks
        .into_iter()
        .filter(|r| !["location_tracking", "tour_checkpoints"].contains(&r.get::<_, &str>(0)))
        .collect();
    assert_eq!(
        pks.len(),
        28,
        "one single-column primary key per table (the seed's, panic_dispatches and five of field operations)"
    );
    for pk in &pks {
        let table: String = pk.get(0);
        assert_eq!(pk.get::<_, String>(1), "uuid", "{table} primary key type");
        assert!(
            pk.get::<_, Option<String>>(2)
                .is_some_and(|d| d.contains("gen_random_uuid")),
            "{table} default"
        );
    }

    // timestamptz everywhere, snake_case columns, created_at on every table.
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> '_schema_migrations'",
            &[],
        )
        .await
        .unwrap();
    let mut with_created_at = BTreeSet::new();
    for c in &columns {
        let (table, column, ty): (String, String, String) = (c.get(0), c.get(1), c.get(2));
        assert_ne!(ty, "timestamp without time zone", "{table}.{column}");
        assert_ne!(ty, "date", "{table}.{column}: timestamptz everywhere");
        assert!(
            column
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
            "{table}.{column} is not snake_case"
        );
        if column == "created_at" {
            with_created_at.insert(table);
        }
    }
    assert_eq!(with_created_at, expected, "created_at on every table");

    // Soft deletes on user-managed records, JSONB metadata, arrays, NUMERIC money/measures.
    let has = |table: &str, column: &str, ty: &str| {
        columns.iter().any(|c| {
            c.get::<_, String>(0) == table
                && c.get::<_, String>(1) == column
                && c.get::<_, String>(2) == ty
        })
    };
    for table in [
        "users", "agents", "clients", "sites", "shifts", "qr_codes", "reports",
    ] {
        assert!(
            has(table, "deleted_at", "timestamp with time zone"),
            "{table}.deleted_at"
        );
        assert!(
            has(table, "updated_at", "timestamp with time zone"),
            "{table}.updated_at"
        );
    }
    assert!(has("agents", "skills", "ARRAY") && has("agents", "certifications", "ARRAY"));
    assert!(has("shifts", "required_skills", "ARRAY"));
    assert!(has("users", "metadata", "jsonb") && has("sites", "geofence", "jsonb"));
    assert!(has("clients", "hourly_rate", "numeric") && has("sites", "radius_m", "numeric"));
}

#[actix_web::test]
async fn geofences_load_back_exactly_as_stored() {
    let url = fresh_database(true).await;
    let client = connect(&url).await;
    let client_id: uuid::Uuid = client
        .query_one(
            "INSERT INTO clients (company_name) VALUES ('Acme') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let polygon = serde_json::json!({"type": "Polygon", "coordinates": [[
        [1.2123456789012, 6.1300000000001], [1.22, 6.13], [1.22, 6.14], [1.2123456789012, 6.1300000000001]
    ]]});
    let circle =
        serde_json::json!({"type": "Circle", "center": [1.2219, 6.1319], "radius_m": 150.125});
    client
        .execute(
            "INSERT INTO sites (client_id, name, geofence, geofence_shape) VALUES ($1, 'P', $2, 'POLYGON')",
            &[&client_id, &polygon],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO sites (client_id, name, geofence, geofence_shape, center_lat, center_lon, radius_m)
             VALUES ($1, 'C', $2, 'CIRCLE', 6.1319, 1.2219, 150.125)",
            &[&client_id, &circle],
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT name, geofence, radius_m::text FROM sites ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, serde_json::Value>(1), circle);
    assert_eq!(rows[0].get::<_, String>(2), "150.125");
    assert_eq!(rows[1].get::<_, serde_json::Value>(1), polygon);

    // A shape that contradicts its GeoJSON is refused by the database itself.
    let err = client
        .execute(
            "INSERT INTO sites (client_id, name, geofence, geofence_shape) VALUES ($1, 'X', $2, 'CIRCLE')",
            &[&client_id, &polygon],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{err:?}"
    );
}

#[actix_web::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let url = fresh_database(false).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    let (ra, rb) = tokio::join!(migrate::apply(&mut a, None), migrate::apply(&mut b, None));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let total = migrate::embedded().len();
    assert_eq!(
        ra.len() + rb.len(),
        total,
        "each migration applied by exactly one of the two"
    );
    let recorded: i64 = a
        .query_one("SELECT count(*) FROM _schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, total as i64);
    let status = migrate::status(&a).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| matches!(s.state, MigrationState::Applied { .. })),
        "{status:?}"
    );
}

#[actix_web::test]
async fn an_edited_applied_migration_is_refused() {
    let url = fresh_database(true).await;
    let mut client = connect(&url).await;
    client
        .execute(
            "UPDATE _schema_migrations SET checksum = 'deadbeef' WHERE version = 20250619104915",
            &[],
        )
        .await
        .unwrap();
    let err = migrate::apply(&mut client, None).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("20250619104915") && msg.contains("changed after it was applied"),
        "{msg}"
    );
    let reason = migrate::not_current_reason(&client).await.unwrap();
    assert!(reason.is_some_and(|r| r.contains("modified")));
}

#[actix_web::test]
async fn deleting_an_agent_deletes_its_location_history_and_only_its() {
    // location_tracking has no per-row foreign key (it costs a parent row lock per inserted
    // row); a statement trigger keeps ON DELETE CASCADE.
    let url = fresh_database(true).await;
    let client = connect(&url).await;
    let mut agents = Vec::new();
    for i in 0..2 {
        let agent: uuid::Uuid = client
            .query_one(
                "WITH u AS (INSERT INTO users (email, password_hash, role, first_name, last_name)
                            VALUES ($1, 'x', 'AGENT', 'A', 'B') RETURNING id)
                 INSERT INTO agents (user_id, employee_id) SELECT id, $1 FROM u RETURNING id",
                &[&format!("cascade{i}@example.test")],
            )
            .await
            .unwrap()
            .get(0);
        client
            .execute(
                "INSERT INTO location_tracking (agent_id, device_id, seq, lat, lon, \"timestamp\")
                 SELECT $1, $1, s, 6.1, 1.2, now() FROM generate_series(1, 5) s",
                &[&agent],
            )
            .await
            .unwrap();
        agents.push(agent);
    }
    client
        .execute("DELETE FROM agents WHERE id = $1", &[&agents[0]])
        .await
        .unwrap();
    let count = |agent: uuid::Uuid| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM location_tracking WHERE agent_id = $1",
                    &[&agent],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count(agents[0]).await, 0, "deleted agent's history is gone");
    assert_eq!(count(agents[1]).await, 5, "other agents keep theirs");
    // Exactly-once still rests on the key.
    let dup = client
        .execute(
            "INSERT INTO location_tracking (agent_id, device_id, seq, lat, lon, \"timestamp\")
             VALUES ($1, $1, 3, 6.1, 1.2, now())",
            &[&agents[1]],
        )
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}
