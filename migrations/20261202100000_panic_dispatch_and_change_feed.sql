-- Panics dispatched from the database, and a change feed for the daemon's caches (issue 10).

-- 1. A panic is committed together with its pending dispatch, in the transaction that stores
--    the panic event. The dispatcher staffs pending rows (on the live bus's nudge, on a
--    NOTIFY, and on a timer as the safety net) and marks each in the transaction that records
--    its emergency, so neither a crash nor a lagging bus loses a panic, and none is staffed
--    twice. One active panic per agent: repeats are stored as reports attached to it.
CREATE TYPE "PanicDispatchState" AS ENUM (
    'PENDING',      -- waiting for the dispatcher
    'DISPATCHED',   -- its emergency was recorded with at least one agent sent
    'UNFILLED',     -- its emergency was recorded, nobody was available
    'NO_LOCATION'   -- no fix, no recent position and no duty site: shown to consoles only
);

-- Where the panic's position came from (documented in docs/protocol.md, "Panic").
CREATE TYPE "PanicLocationSource" AS ENUM ('DEVICE', 'LAST_FIX', 'SITE_CENTRE', 'STALE_FIX', 'NONE');

CREATE TABLE panic_dispatches (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id       uuid NOT NULL UNIQUE REFERENCES reports (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    site_id         uuid REFERENCES sites (id) ON DELETE SET NULL,
    lat             double precision,
    lon             double precision,
    location_source "PanicLocationSource" NOT NULL,
    state           "PanicDispatchState" NOT NULL DEFAULT 'PENDING',
    emergency_id    uuid REFERENCES shifts (id) ON DELETE SET NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT panic_dispatches_located CHECK ((lat IS NULL) = (lon IS NULL)
        AND (state <> 'PENDING' OR lat IS NOT NULL))
);
CREATE INDEX panic_dispatches_pending_idx ON panic_dispatches (created_at) WHERE state = 'PENDING';
CREATE INDEX panic_dispatches_agent_idx ON panic_dispatches (agent_id, created_at DESC);
CREATE TRIGGER panic_dispatches_updated_at BEFORE UPDATE ON panic_dispatches
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 2. Change feed: the daemon caches sites' fences (geofence index), agents' availability
--    (dispatcher), shifts' sites (sessions' duty) and users' access (consoles); checkpoints
--    are read from the table on every scan and need no feed. Every change
--    that matters to those caches sends NOTIFY bahinlink_changes with 'table:id', whichever
--    process made it (the API, `bahinlink seed`, psql). NOTIFY is delivered at commit, once
--    per distinct payload per transaction.
CREATE FUNCTION bahinlink_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_id uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
    ELSE
        row_id := NEW.id;
    END IF;
    PERFORM pg_notify('bahinlink_changes', TG_TABLE_NAME || ':' || row_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER sites_notify_change AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION bahinlink_notify_change();

-- Agents: what decides whether one may be dispatched or stay connected.
CREATE TRIGGER agents_notify_change AFTER UPDATE ON agents
    FOR EACH ROW WHEN (OLD.employment_status IS DISTINCT FROM NEW.employment_status
                       OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION bahinlink_notify_change();
CREATE TRIGGER agents_notify_delete AFTER DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION bahinlink_notify_change();

-- Users: what decides a console's (and an agent's) access.
CREATE TRIGGER users_notify_change AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role
                       OR OLD.client_id IS DISTINCT FROM NEW.client_id
                       OR OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION bahinlink_notify_change();
CREATE TRIGGER users_notify_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bahinlink_notify_change();

-- Shifts: a change of site, agent, window or cancellation of a shift someone may be on. The
-- clock-in's own SCHEDULED -> IN_PROGRESS step is not sent: the session that made it knows.
CREATE TRIGGER shifts_notify_change AFTER UPDATE ON shifts
    FOR EACH ROW WHEN (OLD.site_id IS DISTINCT FROM NEW.site_id
                       OR OLD.agent_id IS DISTINCT FROM NEW.agent_id
                       OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                       OR OLD.start_time IS DISTINCT FROM NEW.start_time
                       OR OLD.end_time IS DISTINCT FROM NEW.end_time
                       OR (OLD.status IS DISTINCT FROM NEW.status
                           AND NEW.status IN ('CANCELLED', 'COMPLETED', 'NO_SHOW')))
    EXECUTE FUNCTION bahinlink_notify_change();
CREATE TRIGGER shifts_notify_delete AFTER DELETE ON shifts
    FOR EACH ROW EXECUTE FUNCTION bahinlink_notify_change();

-- API keys: a revoked session token closes its consoles; a revoked device token its sockets.
CREATE TRIGGER api_keys_notify_change AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION bahinlink_notify_change();
CREATE TRIGGER api_keys_notify_delete AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION bahinlink_notify_change();
