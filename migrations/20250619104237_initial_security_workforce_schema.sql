-- BahinLink Dispatch: initial security-workforce schema.
--
-- Mirrors the seed's first migration (`20250619104237_initial_security_workforce_schema`):
-- 26 enum types, 23 tables, their foreign keys and integrity constraints.
-- Performance indexes live in the next migration (`20250619104915_add_performance_indexes`).
--
-- Conventions (docs/architecture.md explains them):
--   * UUID primary keys with a database default (gen_random_uuid(); the daemon may supply
--     time-ordered UUIDv7 values itself on hot tables).
--   * timestamptz for every point in time; created_at/updated_at on every mutable table, kept
--     by the set_updated_at() trigger; deleted_at soft deletes where records are user-managed.
--   * JSONB for metadata, arrays for lists, NUMERIC for money and precise measures.
--   * Enum type names are the seed's (PascalCase, so quoted); columns are snake_case.
--   * Every foreign key states its ON DELETE rule: CASCADE for rows owned by their parent,
--     SET NULL for references that may outlive their target, RESTRICT elsewhere.

-- ---------------------------------------------------------------------------------------------
-- Enums: the 15 the seed lists, with exactly its labels.
-- ---------------------------------------------------------------------------------------------
CREATE TYPE "UserRole" AS ENUM ('ADMIN', 'SUPERVISOR', 'AGENT', 'CLIENT');
CREATE TYPE "UserStatus" AS ENUM ('ACTIVE', 'INACTIVE', 'SUSPENDED', 'PENDING');
CREATE TYPE "AgentStatus" AS ENUM ('ACTIVE', 'INACTIVE', 'ON_LEAVE', 'TERMINATED');
CREATE TYPE "ClientStatus" AS ENUM ('ACTIVE', 'INACTIVE', 'SUSPENDED', 'TERMINATED');
CREATE TYPE "ShiftType" AS ENUM ('REGULAR', 'OVERTIME', 'EMERGENCY', 'TRAINING');
CREATE TYPE "ShiftStatus" AS ENUM ('SCHEDULED', 'CONFIRMED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED', 'NO_SHOW');
CREATE TYPE "AttendanceMethod" AS ENUM ('GPS', 'QR_CODE', 'MANUAL', 'NFC');
CREATE TYPE "AttendanceStatus" AS ENUM ('CLOCKED_IN', 'ON_BREAK', 'CLOCKED_OUT', 'INCOMPLETE');
CREATE TYPE "ReportType" AS ENUM ('PATROL', 'INCIDENT', 'INSPECTION', 'MAINTENANCE', 'EMERGENCY');
CREATE TYPE "ReportStatus" AS ENUM ('DRAFT', 'SUBMITTED', 'UNDER_REVIEW', 'APPROVED', 'REJECTED', 'ARCHIVED');
CREATE TYPE "ReportPriority" AS ENUM ('LOW', 'NORMAL', 'HIGH', 'CRITICAL');
CREATE TYPE "NotificationType" AS ENUM ('INFO', 'WARNING', 'URGENT', 'EMERGENCY', 'SYSTEM');
CREATE TYPE "MessageType" AS ENUM ('TEXT', 'IMAGE', 'VIDEO', 'LOCATION', 'FILE');
CREATE TYPE "Priority" AS ENUM ('LOW', 'NORMAL', 'HIGH', 'URGENT', 'CRITICAL');
CREATE TYPE "AssignmentMethod" AS ENUM ('MANUAL', 'AUTO', 'INTELLIGENT_AUTO', 'EMERGENCY_AUTO');

-- ---------------------------------------------------------------------------------------------
-- Enums: the 11 more that the columns below need.
-- ---------------------------------------------------------------------------------------------
CREATE TYPE "SiteStatus" AS ENUM ('ACTIVE', 'INACTIVE', 'MAINTENANCE', 'CLOSED');
CREATE TYPE "SiteType" AS ENUM ('COMMERCIAL', 'RESIDENTIAL', 'INDUSTRIAL', 'GOVERNMENT', 'RETAIL',
    'HEALTHCARE', 'EDUCATIONAL', 'CONSTRUCTION', 'EVENT', 'OTHER');
-- How a site's geofence is described: a GeoJSON polygon, or a centre and a radius in metres.
CREATE TYPE "GeofenceShape" AS ENUM ('POLYGON', 'CIRCLE');
-- Why a geofence_violations row was opened.
CREATE TYPE "ViolationType" AS ENUM ('SITE_EXIT', 'CLOCK_IN_OUTSIDE', 'CLOCK_OUT_OUTSIDE',
    'CHECKPOINT_OUTSIDE');
CREATE TYPE "ViolationStatus" AS ENUM ('OPEN', 'ACKNOWLEDGED', 'RESOLVED', 'DISMISSED');
CREATE TYPE "TimeOffType" AS ENUM ('VACATION', 'SICK', 'PERSONAL', 'BEREAVEMENT', 'TRAINING', 'UNPAID', 'OTHER');
CREATE TYPE "TimeOffStatus" AS ENUM ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED');
-- Life cycle of a client's service request.
CREATE TYPE "RequestStatus" AS ENUM ('OPEN', 'ACKNOWLEDGED', 'IN_PROGRESS', 'RESOLVED', 'CLOSED', 'CANCELLED');
CREATE TYPE "MediaType" AS ENUM ('IMAGE', 'VIDEO', 'AUDIO', 'DOCUMENT');
-- qr_codes holds every patrol checkpoint a device can scan: printed QR codes and NFC tags.
CREATE TYPE "CheckpointType" AS ENUM ('QR_CODE', 'NFC_TAG');
-- Outcome of one geofence check. UNCERTAIN: the accuracy circle straddles the fence.
CREATE TYPE "GeofenceResult" AS ENUM ('INSIDE', 'OUTSIDE', 'UNCERTAIN');

-- ---------------------------------------------------------------------------------------------
-- Shared trigger: keep updated_at true without every statement having to remember it.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Certifications are a list of (name, expiry) pairs: an array of this composite type.
CREATE TYPE agent_certification AS (
    name       text,
    expires_at timestamptz
);

-- ---------------------------------------------------------------------------------------------
-- User management
-- ---------------------------------------------------------------------------------------------
CREATE TABLE clients (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_name        text NOT NULL CHECK (length(company_name) BETWEEN 1 AND 200),
    contact_name        text,
    contact_email       text,
    contact_phone       text,
    address             text,
    city                text,
    country             text,
    status              "ClientStatus" NOT NULL DEFAULT 'ACTIVE',
    contract_start_date timestamptz,
    contract_end_date   timestamptz,
    -- Money: billed rate per guard-hour and the contract's monthly value.
    hourly_rate         numeric(10, 2) CHECK (hourly_rate >= 0),
    monthly_value       numeric(12, 2) CHECK (monthly_value >= 0),
    currency            char(3) NOT NULL DEFAULT 'XOF',
    billing_info        jsonb NOT NULL DEFAULT '{}',
    settings            jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK (contract_end_date IS NULL OR contract_start_date IS NULL
           OR contract_end_date >= contract_start_date)
);

CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- argon2id PHC string; the password itself is never stored.
    password_hash       text NOT NULL,
    role                "UserRole" NOT NULL,
    status              "UserStatus" NOT NULL DEFAULT 'ACTIVE',
    first_name          text,
    last_name           text,
    phone               text,
    -- A CLIENT user belongs to exactly one client; RESTRICT: a client with logins is not
    -- deleted from under them (clients are soft-deleted instead).
    client_id           uuid REFERENCES clients (id) ON DELETE RESTRICT,
    preferences         jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    last_login_at       timestamptz,
    failed_login_count  integer NOT NULL DEFAULT 0,
    -- Bumped when a password changes or all sessions are revoked.
    token_generation    integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK ((role = 'CLIENT') = (client_id IS NOT NULL))
);
-- Logins are case-insensitive, and a deleted user's address may be reused.
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE agents (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The agent's login; an agent row is owned by its user.
    user_id             uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    employee_id         text NOT NULL,
    employment_status   "AgentStatus" NOT NULL DEFAULT 'ACTIVE',
    hire_date           timestamptz,
    termination_date    timestamptz,
    skills              text[] NOT NULL DEFAULT '{}',
    certifications      agent_certification[] NOT NULL DEFAULT '{}',
    languages           text[] NOT NULL DEFAULT '{}',
    -- Home location, for distance costs when no live position is known.
    home_lat            numeric(9, 6) CHECK (home_lat BETWEEN -90 AND 90),
    home_lon            numeric(9, 6) CHECK (home_lon BETWEEN -180 AND 180),
    max_weekly_hours    numeric(5, 2) CHECK (max_weekly_hours > 0 AND max_weekly_hours <= 168),
    hourly_rate         numeric(10, 2) CHECK (hourly_rate >= 0),
    performance_rating  numeric(3, 2) CHECK (performance_rating BETWEEN 0 AND 5),
    -- Sites and clients this agent must never be assigned to (client's request, past incident).
    barred_site_ids     uuid[] NOT NULL DEFAULT '{}',
    barred_client_ids   uuid[] NOT NULL DEFAULT '{}',
    supervisor_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    emergency_contact   jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK ((home_lat IS NULL) = (home_lon IS NULL))
);
CREATE UNIQUE INDEX agents_employee_id_key ON agents (employee_id) WHERE deleted_at IS NULL;

-- Credentials that are not passwords: agents' device tokens and users' session tokens.
-- Only a SHA-256 of the (high-entropy, random) secret is stored.
CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind                text NOT NULL CHECK (kind IN ('DEVICE', 'SESSION', 'SERVICE')),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash            bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- First characters of the secret, shown in listings to tell tokens apart.
    key_prefix          text NOT NULL,
    user_id             uuid REFERENCES users (id) ON DELETE CASCADE,
    agent_id            uuid REFERENCES agents (id) ON DELETE CASCADE,
    created_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    scopes              text[] NOT NULL DEFAULT '{}',
    rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0),
    last_used_at        timestamptz,
    last_used_ip        inet,
    expires_at          timestamptz,
    revoked_at          timestamptz,
    revoked_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'DEVICE' OR agent_id IS NOT NULL),
    CHECK (kind <> 'SESSION' OR user_id IS NOT NULL)
);

-- ---------------------------------------------------------------------------------------------
-- Sites and geofencing
-- ---------------------------------------------------------------------------------------------
CREATE TABLE sites (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- A site belongs to its client; RESTRICT: a site with history is not silently removed
    -- with a client row (clients are soft-deleted).
    client_id           uuid NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description         text,
    address             text,
    city                text,
    country             text,
    site_type           "SiteType" NOT NULL DEFAULT 'COMMERCIAL',
    status              "SiteStatus" NOT NULL DEFAULT 'ACTIVE',
    -- IANA zone name, for local-time rules (shift days, weekly hours).
    timezone            text NOT NULL DEFAULT 'UTC',
    -- The geofence exactly as the API received it (GeoJSON Polygon, or the Circle object),
    -- so that it can be returned unchanged; the columns after it are derived from it.
    geofence            jsonb NOT NULL,
    geofence_shape      "GeofenceShape" NOT NULL,
    -- Circle centre and radius (NULL for polygons).
    center_lat          double precision CHECK (center_lat BETWEEN -90 AND 90),
    center_lon          double precision CHECK (center_lon BETWEEN -180 AND 180),
    radius_m            numeric(10, 3) CHECK (radius_m > 0 AND radius_m <= 50000),
    -- Bumped on every geofence change: the daemon swaps its R-tree when it moves.
    geofence_version    integer NOT NULL DEFAULT 1,
    access_instructions text,
    emergency_contacts  jsonb NOT NULL DEFAULT '[]',
    required_agents     integer NOT NULL DEFAULT 1 CHECK (required_agents >= 0),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK (
        (geofence_shape = 'POLYGON' AND geofence ->> 'type' = 'Polygon'
            AND center_lat IS NULL AND center_lon IS NULL AND radius_m IS NULL)
        OR
        (geofence_shape = 'CIRCLE' AND geofence ->> 'type' = 'Circle'
            AND center_lat IS NOT NULL AND center_lon IS NOT NULL AND radius_m IS NOT NULL)
    )
);

-- ---------------------------------------------------------------------------------------------
-- Shifts and scheduling
-- ---------------------------------------------------------------------------------------------
CREATE TABLE shifts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- RESTRICT: shifts are the payroll and attendance record of a site. Only an EMERGENCY
    -- shift may have no site (it is at location_lat/lon instead).
    site_id             uuid REFERENCES sites (id) ON DELETE RESTRICT,
    -- The assigned agent; the shift outlives an agent row (it becomes unassigned).
    agent_id            uuid REFERENCES agents (id) ON DELETE SET NULL,
    supervisor_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz NOT NULL,
    shift_type          "ShiftType" NOT NULL DEFAULT 'REGULAR',
    status              "ShiftStatus" NOT NULL DEFAULT 'SCHEDULED',
    priority            "Priority" NOT NULL DEFAULT 'NORMAL',
    required_skills     text[] NOT NULL DEFAULT '{}',
    required_certifications text[] NOT NULL DEFAULT '{}',
    -- Where an EMERGENCY shift happens when it is not a whole site (a panic's position).
    location_lat        double precision CHECK (location_lat BETWEEN -90 AND 90),
    location_lon        double precision CHECK (location_lon BETWEEN -180 AND 180),
    description         text,
    instructions        text,
    break_minutes       integer NOT NULL DEFAULT 0 CHECK (break_minutes >= 0),
    hourly_rate         numeric(10, 2) CHECK (hourly_rate >= 0),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK (end_time > start_time),
    CHECK (end_time - start_time <= interval '24 hours'),
    CHECK (site_id IS NOT NULL OR (shift_type = 'EMERGENCY' AND location_lat IS NOT NULL AND location_lon IS NOT NULL))
);

-- Every assignment decision, manual or automatic, with its score and reasons.
CREATE TABLE shift_assignments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    shift_id            uuid NOT NULL REFERENCES shifts (id) ON DELETE CASCADE,
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    assigned_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    method              "AssignmentMethod" NOT NULL,
    status              text NOT NULL DEFAULT 'ASSIGNED'
                        CHECK (status IN ('ASSIGNED', 'PROPOSED', 'ACCEPTED', 'DECLINED',
                                          'TIMED_OUT', 'CANCELLED', 'SUPERSEDED')),
    score               numeric(12, 4),
    reasons             jsonb NOT NULL DEFAULT '{}',
    distance_m          numeric(12, 2) CHECK (distance_m >= 0),
    eta_s               integer CHECK (eta_s >= 0),
    assigned_at         timestamptz NOT NULL DEFAULT now(),
    responded_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE time_off_requests (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    time_off_type       "TimeOffType" NOT NULL,
    status              "TimeOffStatus" NOT NULL DEFAULT 'PENDING',
    start_date          timestamptz NOT NULL,
    end_date            timestamptz NOT NULL,
    reason              text,
    reviewed_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    reviewed_at         timestamptz,
    review_notes        text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK (end_date > start_date)
);

-- ---------------------------------------------------------------------------------------------
-- Checkpoints (QR codes and NFC tags)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE qr_codes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id             uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    checkpoint_type     "CheckpointType" NOT NULL DEFAULT 'QR_CODE',
    -- The QR payload (random, unguessable) or the NFC tag's UID (upper-case hex).
    code                text NOT NULL CHECK (length(code) BETWEEN 4 AND 256),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description         text,
    lat                 double precision CHECK (lat BETWEEN -90 AND 90),
    lon                 double precision CHECK (lon BETWEEN -180 AND 180),
    -- How far from (lat, lon) a scan may be; NULL: the daemon's configured default.
    max_distance_m      numeric(8, 2) CHECK (max_distance_m > 0),
    is_active           boolean NOT NULL DEFAULT true,
    expires_at          timestamptz,
    created_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (checkpoint_type, code),
    CHECK ((lat IS NULL) = (lon IS NULL))
);

-- ---------------------------------------------------------------------------------------------
-- Attendance
-- ---------------------------------------------------------------------------------------------
CREATE TABLE attendance (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- RESTRICT: attendance is a payroll record; its shift and agent are soft-deleted instead.
    shift_id            uuid NOT NULL REFERENCES shifts (id) ON DELETE RESTRICT,
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    status              "AttendanceStatus" NOT NULL DEFAULT 'CLOCKED_IN',
    clock_in_time       timestamptz NOT NULL,
    clock_in_method     "AttendanceMethod" NOT NULL,
    clock_in_lat        double precision,
    clock_in_lon        double precision,
    clock_in_accuracy_m real,
    clock_out_time      timestamptz,
    clock_out_method    "AttendanceMethod",
    clock_out_lat       double precision,
    clock_out_lon       double precision,
    clock_out_accuracy_m real,
    -- The checkpoint used for a QR_CODE or NFC clock-in.
    qr_code_id          uuid REFERENCES qr_codes (id) ON DELETE SET NULL,
    verified            boolean NOT NULL DEFAULT false,
    needs_review        boolean NOT NULL DEFAULT false,
    break_started_at    timestamptz,
    total_break_minutes numeric(8, 2) NOT NULL DEFAULT 0,
    total_hours         numeric(6, 2),
    -- Device sequence numbers of the events that changed this row (exactly-once replay).
    event_seqs          bigint[] NOT NULL DEFAULT '{}',
    notes               text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (clock_out_time IS NULL OR clock_out_time >= clock_in_time)
);

-- ---------------------------------------------------------------------------------------------
-- Geofence checks and breaches
-- ---------------------------------------------------------------------------------------------
CREATE TABLE geofence_validations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    site_id             uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    shift_id            uuid REFERENCES shifts (id) ON DELETE SET NULL,
    attendance_id       uuid REFERENCES attendance (id) ON DELETE SET NULL,
    -- What asked for the check.
    validation_type     text NOT NULL CHECK (validation_type IN ('CLOCK_IN', 'CLOCK_OUT',
                            'CHECKPOINT_SCAN', 'PANIC', 'POSITION')),
    method              "AttendanceMethod",
    result              "GeofenceResult" NOT NULL,
    is_valid            boolean NOT NULL,
    lat                 double precision NOT NULL,
    lon                 double precision NOT NULL,
    accuracy_m          real,
    -- Metres from the point to the fence: positive outside, negative inside.
    distance_m          numeric(12, 2),
    event_seq           bigint,
    validated_at        timestamptz NOT NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE geofence_violations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    site_id             uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    shift_id            uuid REFERENCES shifts (id) ON DELETE SET NULL,
    violation_type      "ViolationType" NOT NULL DEFAULT 'SITE_EXIT',
    status              "ViolationStatus" NOT NULL DEFAULT 'OPEN',
    lat                 double precision NOT NULL,
    lon                 double precision NOT NULL,
    accuracy_m          real,
    distance_m          numeric(12, 2) NOT NULL,
    started_at          timestamptz NOT NULL,
    resolved_at         timestamptz,
    duration_s          integer CHECK (duration_s >= 0),
    resolved_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    notes               text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (resolved_at IS NULL OR resolved_at >= started_at)
);

-- ---------------------------------------------------------------------------------------------
-- Tracking
-- ---------------------------------------------------------------------------------------------
-- The hot table, and the ledger of device events: one row per accepted event (positions
-- above all, written by binary COPY; also scans, clock and break events, panics, replies).
-- (agent_id, seq) is the idempotency key that makes resends exactly-once: an event's side
-- effects (attendance, scans, reports) commit in the same transaction as its row here.
CREATE TABLE location_tracking (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    shift_id            uuid REFERENCES shifts (id) ON DELETE SET NULL,
    -- The device credential (api_keys.id) that sent the event. No foreign key on purpose:
    -- the history must survive a token's deletion, and the check would cost on every row of
    -- the hottest insert path.
    device_id           uuid NOT NULL,
    -- The device's event sequence number (kept across reconnects).
    seq                 bigint NOT NULL CHECK (seq >= 0),
    event_type          text NOT NULL DEFAULT 'position'
                        CHECK (event_type IN ('position', 'qr_scan', 'nfc_scan', 'clock_in', 'clock_out',
                                              'break_start', 'break_end', 'panic', 'dispatch_reply')),
    -- NULL only for events that carry no fix (a break without a position, a reply).
    lat                 double precision CHECK (lat BETWEEN -90 AND 90),
    lon                 double precision CHECK (lon BETWEEN -180 AND 180),
    accuracy_m          real,
    altitude_m          real,
    speed_mps           real,
    heading_deg         real,
    battery_pct         smallint CHECK (battery_pct BETWEEN 0 AND 100),
    -- When the fix was taken or the action done (device clock); created_at is when the
    -- server stored it.
    "timestamp"         timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- false: stored, but not used for geofence decisions (poor accuracy, impossible speed).
    is_trusted          boolean NOT NULL DEFAULT true,
    untrusted_reason    text,
    -- The site whose fence contained the fix, if any.
    site_id             uuid,
    CONSTRAINT location_tracking_agent_seq_key UNIQUE (agent_id, seq),
    CHECK ((lat IS NULL) = (lon IS NULL)),
    CHECK (event_type <> 'position' OR lat IS NOT NULL)
);

CREATE TABLE qr_code_scans (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL when the scanned code is unknown (the raw code is kept in scanned_code).
    qr_code_id          uuid REFERENCES qr_codes (id) ON DELETE SET NULL,
    agent_id            uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    site_id             uuid REFERENCES sites (id) ON DELETE SET NULL,
    shift_id            uuid REFERENCES shifts (id) ON DELETE SET NULL,
    checkpoint_type     "CheckpointType" NOT NULL,
    scanned_code        text NOT NULL,
    device_id           uuid,
    event_seq           bigint,
    lat                 double precision,
    lon                 double precision,
    accuracy_m          real,
    -- Metres between the scan and the checkpoint's recorded location.
    distance_m          numeric(12, 2),
    is_valid            boolean NOT NULL,
    validation_result   text NOT NULL,
    scanned_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------------------------
CREATE TABLE report_templates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: a template for every client. A client's own templates go with it.
    client_id           uuid REFERENCES clients (id) ON DELETE CASCADE,
    name                text NOT NULL,
    report_type         "ReportType" NOT NULL,
    fields              jsonb NOT NULL DEFAULT '[]',
    version             integer NOT NULL DEFAULT 1,
    is_active           boolean NOT NULL DEFAULT true,
    created_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE TABLE reports (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_type         "ReportType" NOT NULL,
    status              "ReportStatus" NOT NULL DEFAULT 'DRAFT',
    priority            "ReportPriority" NOT NULL DEFAULT 'NORMAL',
    title               text NOT NULL,
    description         text,
    -- Reports are evidence: they outlive the rows they mention.
    agent_id            uuid REFERENCES agents (id) ON DELETE SET NULL,
    site_id             uuid REFERENCES sites (id) ON DELETE SET NULL,
    shift_id            uuid REFERENCES shifts (id) ON DELETE SET NULL,
    client_id           uuid REFERENCES clients (id) ON DELETE SET NULL,
    template_id         uuid REFERENCES report_templates (id) ON DELETE SET NULL,
    reviewed_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    lat                 double precision,
    lon                 double precision,
    device_id           uuid,
    event_seq           bigint,
    occurred_at         timestamptz,
    submitted_at        timestamptz,
    reviewed_at         timestamptz,
    data                jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE TABLE report_workflows (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id           uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    actor_id            uuid REFERENCES users (id) ON DELETE SET NULL,
    step                integer NOT NULL DEFAULT 1,
    from_status         "ReportStatus",
    to_status           "ReportStatus" NOT NULL,
    comment             text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Communication
-- ---------------------------------------------------------------------------------------------
CREATE TABLE messages (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sender_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    recipient_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    -- Replies form threads; a thread survives the deletion of one message.
    parent_id           uuid REFERENCES messages (id) ON DELETE SET NULL,
    message_type        "MessageType" NOT NULL DEFAULT 'TEXT',
    content             text NOT NULL,
    lat                 double precision,
    lon                 double precision,
    read_at             timestamptz,
    sent_at             timestamptz NOT NULL DEFAULT now(),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE TABLE media_files (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id           uuid REFERENCES reports (id) ON DELETE CASCADE,
    message_id          uuid REFERENCES messages (id) ON DELETE CASCADE,
    uploaded_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    media_type          "MediaType" NOT NULL,
    file_name           text NOT NULL,
    mime_type           text NOT NULL,
    size_bytes          bigint NOT NULL CHECK (size_bytes >= 0),
    storage_path        text NOT NULL,
    sha256              bytea CHECK (length(sha256) = 32),
    thumbnail_path      text,
    width_px            integer,
    height_px           integer,
    duration_s          numeric(10, 3),
    lat                 double precision,
    lon                 double precision,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE TABLE notifications (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    recipient_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sender_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    notification_type   "NotificationType" NOT NULL,
    priority            "Priority" NOT NULL DEFAULT 'NORMAL',
    title               text NOT NULL,
    message             text NOT NULL,
    data                jsonb NOT NULL DEFAULT '{}',
    channels            text[] NOT NULL DEFAULT '{}',
    -- The row this notification is about (a shift, an emergency, a violation...).
    related_entity_type text,
    related_entity_id   uuid,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    read_at             timestamptz,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_requests (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id           uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    site_id             uuid REFERENCES sites (id) ON DELETE SET NULL,
    requested_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    assigned_to         uuid REFERENCES users (id) ON DELETE SET NULL,
    request_type        text NOT NULL,
    title               text NOT NULL,
    description         text,
    priority            "Priority" NOT NULL DEFAULT 'NORMAL',
    status              "RequestStatus" NOT NULL DEFAULT 'OPEN',
    due_at              timestamptz,
    resolved_at         timestamptz,
    resolution          text,
    -- Quoted price of extra service, if any.
    estimated_cost      numeric(12, 2) CHECK (estimated_cost >= 0),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

-- ---------------------------------------------------------------------------------------------
-- System and audit
-- ---------------------------------------------------------------------------------------------
CREATE TABLE audit_logs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Who did it; the trail outlives the user row.
    user_id             uuid REFERENCES users (id) ON DELETE SET NULL,
    action              text NOT NULL,
    entity_type         text NOT NULL,
    entity_id           uuid,
    old_values          jsonb,
    new_values          jsonb,
    ip_address          inet,
    user_agent          text,
    request_id          text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE system_configurations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key                 text NOT NULL UNIQUE,
    value               jsonb NOT NULL,
    description         text,
    category            text NOT NULL DEFAULT 'general',
    updated_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- updated_at triggers on every table that has the column.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.table_name
        FROM information_schema.columns c
        JOIN information_schema.tables tb
          ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
        WHERE c.table_schema = current_schema()
          AND c.column_name = 'updated_at'
          AND tb.table_type = 'BASE TABLE'
    LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION set_updated_at()',
            t || '_set_updated_at', t);
    END LOOP;
END;
$$;
