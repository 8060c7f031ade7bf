-- Field operations (issue 13): guard tours and their rounds, one alert life cycle shared by
-- every kind of alarm, lone-worker rules per site, webhooks with durable deliveries.
--
-- What makes the alert model safe across crashes: an alert row is inserted in the same
-- transaction as its cause (a violation, a panic report, a closed round, a safety check), its
-- UNIQUE dedupe_key makes a retried or repeated cause open nothing twice, its webhook
-- deliveries are queued by a trigger in that same transaction, and the daemon announces it to
-- consoles only after reading it back from a NOTIFY sent at commit.

-- 1. Enums.
CREATE TYPE "AlertKind" AS ENUM (
    'GEOFENCE_VIOLATION', 'PANIC', 'MISSED_CHECKPOINT', 'LONE_WORKER', 'DEVICE_OFFLINE',
    'LATE_CLOCK_IN', 'NO_SHOW'
);
CREATE TYPE "AlertSeverity" AS ENUM ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL');
CREATE TYPE "TourRoundStatus" AS ENUM ('OPEN', 'COMPLETED', 'PARTIAL', 'MISSED');
CREATE TYPE "WebhookDeliveryStatus" AS ENUM ('PENDING', 'DELIVERED', 'FAILED');

-- 2. A device's answer to a lone-worker check-in is an event of the ledger like the others.
ALTER TABLE location_tracking DROP CONSTRAINT location_tracking_event_type_check;
ALTER TABLE location_tracking ADD CONSTRAINT location_tracking_event_type_check
    CHECK (event_type IN ('position', 'qr_scan', 'nfc_scan', 'clock_in', 'clock_out',
                          'break_start', 'break_end', 'panic', 'dispatch_reply', 'check_in_reply'));

-- 3. Lone-worker rules of a site; NULL: the daemon's setting (`[safety]`).
ALTER TABLE sites
    ADD COLUMN lone_worker_idle_s  integer CHECK (lone_worker_idle_s BETWEEN 10 AND 86400),
    ADD COLUMN lone_worker_still_s integer CHECK (lone_worker_still_s BETWEEN 10 AND 86400),
    ADD COLUMN lone_worker_still_m double precision CHECK (lone_worker_still_m BETWEEN 1 AND 10000),
    ADD COLUMN lone_worker_reply_s integer CHECK (lone_worker_reply_s BETWEEN 5 AND 3600);

-- 4. Tours: a round of a site's checkpoints every interval while a shift there is in progress.
CREATE TABLE tours (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- true: the checkpoints must be scanned in their listed order.
    ordered         boolean NOT NULL DEFAULT false,
    -- A round starts every interval_min from the shift's start (or from not_before) ...
    interval_min    integer NOT NULL CHECK (interval_min BETWEEN 1 AND 1440),
    -- ... and must be walked within window_min of its start.
    window_min      integer NOT NULL CHECK (window_min >= 1 AND window_min <= interval_min),
    -- Site-local time of day: a shift's rounds start at this time of its first day, or at the
    -- shift's start if that is later (none when it falls after the shift's end). NULL: at the
    -- shift's start.
    not_before      time,
    is_active       boolean NOT NULL DEFAULT true,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX tours_site_id_idx ON tours (site_id) WHERE deleted_at IS NULL;
CREATE TRIGGER tours_updated_at BEFORE UPDATE ON tours
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE tour_checkpoints (
    tour_id         uuid NOT NULL REFERENCES tours (id) ON DELETE CASCADE,
    -- 0-based place in the tour (the order an ordered tour is walked in).
    position        integer NOT NULL CHECK (position >= 0),
    qr_code_id      uuid NOT NULL REFERENCES qr_codes (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tour_id, position),
    UNIQUE (tour_id, qr_code_id)
);

-- One round of a tour for one shift. Judged from the stored scans when its window closes
-- (status, missed alert) and again when its late period ends (late checkpoints).
CREATE TABLE tour_rounds (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tour_id         uuid NOT NULL REFERENCES tours (id) ON DELETE CASCADE,
    shift_id        uuid NOT NULL REFERENCES shifts (id) ON DELETE CASCADE,
    site_id         uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    agent_id        uuid REFERENCES agents (id) ON DELETE SET NULL,
    round_no        integer NOT NULL CHECK (round_no >= 0),
    opens_at        timestamptz NOT NULL,
    closes_at       timestamptz NOT NULL,
    -- A scan after closes_at and before this counts as late (the next round's start).
    late_until      timestamptz NOT NULL,
    status          "TourRoundStatus" NOT NULL DEFAULT 'OPEN',
    expected        integer NOT NULL CHECK (expected >= 0),
    on_time         integer NOT NULL DEFAULT 0,
    late            integer NOT NULL DEFAULT 0,
    out_of_order    integer NOT NULL DEFAULT 0,
    missed          integer NOT NULL DEFAULT 0,
    wrong_site      integer NOT NULL DEFAULT 0,
    -- Per checkpoint: {checkpoint_id, name, position, visit, scanned_at}.
    visits          jsonb NOT NULL DEFAULT '[]',
    closed_at       timestamptz,
    -- The late period is over and the counts are final.
    finalized       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tour_id, shift_id, round_no),
    CHECK (closes_at > opens_at AND late_until >= closes_at)
);
CREATE INDEX tour_rounds_closes_at_idx ON tour_rounds (closes_at) WHERE status = 'OPEN';
CREATE INDEX tour_rounds_late_until_idx ON tour_rounds (late_until) WHERE NOT finalized;
-- The compliance report: a site's (or every site's) rounds over a period.
CREATE INDEX tour_rounds_opens_at_idx ON tour_rounds (opens_at, site_id);
CREATE INDEX tour_rounds_shift_id_idx ON tour_rounds (shift_id);

-- 5. Alerts: one life cycle for every kind.
CREATE TABLE alerts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            "AlertKind" NOT NULL,
    severity        "AlertSeverity" NOT NULL,
    -- One alert per cause ('missed_checkpoint:<round>', 'panic:<report>', ...): a retried
    -- transaction, a restart or a second daemon opens nothing twice.
    dedupe_key      text NOT NULL UNIQUE,
    -- Derived from the site (trigger below): scoping for CLIENT users and webhooks.
    client_id       uuid REFERENCES clients (id) ON DELETE SET NULL,
    site_id         uuid REFERENCES sites (id) ON DELETE SET NULL,
    agent_id        uuid REFERENCES agents (id) ON DELETE SET NULL,
    shift_id        uuid REFERENCES shifts (id) ON DELETE SET NULL,
    -- The row that caused it: a geofence violation, a panic report, a tour round.
    source_id       uuid,
    title           text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    opened_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by uuid REFERENCES users (id) ON DELETE SET NULL,
    resolved_at     timestamptz,
    -- NULL with resolved_at set: resolved by the system (the cause went away).
    resolved_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    resolution_note text,
    escalation_level integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    escalated_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);
CREATE INDEX alerts_unresolved_idx ON alerts (opened_at) WHERE resolved_at IS NULL;
-- The safety watch's look-ups of one kind's open alerts (late clock-ins, devices offline).
CREATE INDEX alerts_unresolved_kind_idx ON alerts (kind) WHERE resolved_at IS NULL;
CREATE INDEX alerts_opened_at_idx ON alerts (opened_at DESC);
CREATE INDEX alerts_site_id_idx ON alerts (site_id, opened_at DESC);
CREATE INDEX alerts_agent_id_idx ON alerts (agent_id, opened_at DESC);
CREATE TRIGGER alerts_updated_at BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE FUNCTION alerts_fill_client() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_id IS NULL AND NEW.site_id IS NOT NULL THEN
        NEW.client_id := (SELECT client_id FROM sites WHERE id = NEW.site_id);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER alerts_fill_client BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_fill_client();

-- 6. Webhooks: ADMIN-registered endpoints, per client or global. The signing secret is not
--    stored: it is derived from the daemon's key file and the webhook's id (docs/operations.md).
CREATE TABLE webhooks (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: every client's alerts (and alerts of no site).
    client_id       uuid REFERENCES clients (id) ON DELETE CASCADE,
    url             text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    -- Empty: every kind.
    kinds           "AlertKind"[] NOT NULL DEFAULT '{}',
    description     text,
    is_active       boolean NOT NULL DEFAULT true,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE TRIGGER webhooks_updated_at BEFORE UPDATE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    alert_id        uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    -- opened, acknowledged, escalated, resolved
    event           text NOT NULL,
    -- The exact JSON posted (the signature covers these bytes as sent).
    body            jsonb NOT NULL,
    status          "WebhookDeliveryStatus" NOT NULL DEFAULT 'PENDING',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_webhook_id_idx ON webhook_deliveries (webhook_id, created_at DESC);
CREATE TRIGGER webhook_deliveries_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Every step of an alert's life is queued for the webhooks that want its kind, and announced
-- to the daemon (channel bahinlink_alerts, payload 'alerts:<id>').
CREATE FUNCTION alerts_after_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ev := 'opened';
    ELSIF NEW.resolved_at IS DISTINCT FROM OLD.resolved_at THEN
        ev := 'resolved';
    ELSIF NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at THEN
        ev := 'acknowledged';
    ELSIF NEW.escalation_level IS DISTINCT FROM OLD.escalation_level THEN
        ev := 'escalated';
    ELSE
        RETURN NULL;
    END IF;
    -- The system's own steps are audited here; a person's steps by the API that made them
    -- (with the caller's address).
    IF ev IN ('opened', 'escalated') OR (ev = 'resolved' AND NEW.resolved_by IS NULL) THEN
        INSERT INTO audit_logs (action, entity_type, entity_id, old_values, new_values)
        VALUES ('alert.' || ev, 'alert', NEW.id,
                CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) - 'dedupe_key' END,
                to_jsonb(NEW) - 'dedupe_key');
    END IF;
    -- People are told: supervisors (and the shift's own supervisor) of a HIGH or CRITICAL
    -- alert at once and of any alert that escalates; admins too from level 2.
    IF (ev = 'opened' AND NEW.severity IN ('HIGH', 'CRITICAL')) OR ev = 'escalated' THEN
        INSERT INTO notifications (recipient_id, notification_type, priority, title, message, data,
                                   channels, related_entity_type, related_entity_id, sent_at)
        SELECT u.id,
               (CASE NEW.severity WHEN 'LOW' THEN 'INFO' WHEN 'MEDIUM' THEN 'WARNING'
                    WHEN 'HIGH' THEN 'URGENT' ELSE 'EMERGENCY' END)::"NotificationType",
               (CASE NEW.severity WHEN 'LOW' THEN 'LOW' WHEN 'MEDIUM' THEN 'NORMAL'
                    WHEN 'HIGH' THEN 'HIGH' ELSE 'CRITICAL' END)::"Priority",
               CASE WHEN ev = 'escalated'
                    THEN 'Escalated (level ' || NEW.escalation_level || '): ' || NEW.title
                    ELSE NEW.title END,
               NEW.title || ' (' || lower(replace(NEW.kind::text, '_', ' ')) || ')',
               jsonb_build_object('alert_id', NEW.id, 'kind', NEW.kind, 'severity', NEW.severity,
                                  'escalation_level', NEW.escalation_level, 'site_id', NEW.site_id,
                                  'agent_id', NEW.agent_id),
               '{console}', 'alert', NEW.id, now()
        FROM users u
        WHERE u.deleted_at IS NULL AND u.status = 'ACTIVE'
          AND (u.role = 'SUPERVISOR'
               OR (u.role = 'ADMIN' AND NEW.escalation_level >= 2)
               OR u.id = (SELECT supervisor_id FROM shifts WHERE id = NEW.shift_id));
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, alert_id, event, body)
    SELECT w.id, NEW.id, ev,
           jsonb_build_object('event', ev, 'webhook_id', w.id, 'alert', to_jsonb(NEW) - 'dedupe_key')
    FROM webhooks w
    WHERE w.deleted_at IS NULL AND w.is_active
      AND (w.client_id IS NULL OR w.client_id = NEW.client_id)
      AND (cardinality(w.kinds) = 0 OR NEW.kind = ANY (w.kinds));
    PERFORM pg_notify('bahinlink_alerts', 'alerts:' || NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER alerts_after_change AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_after_change();

-- Notifications are pushed to their recipient's consoles: 'notifications:<id>'.
CREATE FUNCTION notifications_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bahinlink_alerts', 'notifications:' || NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER notifications_after_insert AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION notifications_after_insert();

-- 7. Violations and panics open (and close) their alert in their own transaction, whichever
--    code path or process writes them.
CREATE FUNCTION geofence_violations_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, source_id,
                            title, details, opened_at)
        VALUES ('GEOFENCE_VIOLATION', 'MEDIUM', 'geofence_violation:' || NEW.id, NEW.site_id,
                NEW.agent_id, NEW.shift_id, NEW.id, 'Agent left the site',
                jsonb_build_object('violation_id', NEW.id, 'distance_m', NEW.distance_m,
                                   'lat', NEW.lat, 'lon', NEW.lon),
                NEW.started_at)
        ON CONFLICT (dedupe_key) DO NOTHING;
    ELSIF NEW.resolved_at IS NOT NULL AND OLD.resolved_at IS NULL THEN
        UPDATE alerts
        SET resolved_at = GREATEST(NEW.resolved_at, opened_at), resolved_by = NEW.resolved_by,
            resolution_note = COALESCE(NEW.notes, 'the agent is back inside the site')
        WHERE dedupe_key = 'geofence_violation:' || NEW.id AND resolved_at IS NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER geofence_violations_alert AFTER INSERT OR UPDATE ON geofence_violations
    FOR EACH ROW EXECUTE FUNCTION geofence_violations_alert();

-- A panic's repeats (data.attached_to) belong to the first one's alert.
CREATE FUNCTION panic_reports_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.report_type <> 'EMERGENCY' OR NEW.data ->> 'attached_to' IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alerts (kind, severity, dedupe_key, site_id, agent_id, shift_id, source_id,
                            title, details, opened_at)
        VALUES ('PANIC', 'CRITICAL', 'panic:' || NEW.id, NEW.site_id, NEW.agent_id, NEW.shift_id,
                NEW.id, 'Panic alarm',
                jsonb_build_object('report_id', NEW.id, 'lat', NEW.lat, 'lon', NEW.lon,
                                   'note', NEW.description,
                                   'location_source', NEW.data ->> 'location_source'),
                COALESCE(NEW.occurred_at, now()))
        ON CONFLICT (dedupe_key) DO NOTHING;
    ELSIF OLD.status = 'SUBMITTED' AND NEW.status <> 'SUBMITTED' THEN
        UPDATE alerts SET acknowledged_at = COALESCE(NEW.reviewed_at, now()),
                          acknowledged_by = NEW.reviewed_by
        WHERE dedupe_key = 'panic:' || NEW.id AND acknowledged_at IS NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER panic_reports_alert AFTER INSERT OR UPDATE ON reports
    FOR EACH ROW EXECUTE FUNCTION panic_reports_alert();
