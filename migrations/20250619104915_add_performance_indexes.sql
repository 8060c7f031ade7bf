-- BahinLink Dispatch: performance indexes.
--
-- Mirrors the seed's second migration (`20250619104915_add_performance_indexes`): every index
-- the seed names, with exactly its name, and then the composite and partial indexes that the
-- daemon's own queries need. Where a seed index can serve one of those queries better as a
-- composite or a BRIN, it keeps the seed's name and says so.

-- ---------------------------------------------------------------------------------------------
-- Seed: user management
-- ---------------------------------------------------------------------------------------------
CREATE INDEX users_role_idx ON users (role);
CREATE INDEX users_status_idx ON users (status);
CREATE INDEX users_last_login_at_idx ON users (last_login_at);
CREATE INDEX users_created_at_idx ON users (created_at);

CREATE INDEX agents_employment_status_idx ON agents (employment_status);
CREATE INDEX agents_hire_date_idx ON agents (hire_date);
CREATE INDEX agents_created_at_idx ON agents (created_at);

-- ---------------------------------------------------------------------------------------------
-- Seed: operations
-- ---------------------------------------------------------------------------------------------
CREATE INDEX sites_client_id_idx ON sites (client_id);
CREATE INDEX sites_status_idx ON sites (status);
CREATE INDEX sites_site_type_idx ON sites (site_type);
CREATE INDEX sites_created_at_idx ON sites (created_at);

CREATE INDEX shifts_site_id_idx ON shifts (site_id);
-- Composite: an agent's schedule in time order (overlap and rest-time rules, "my shifts").
CREATE INDEX shifts_agent_id_idx ON shifts (agent_id, start_time);
CREATE INDEX shifts_status_idx ON shifts (status);
CREATE INDEX shifts_start_time_idx ON shifts (start_time);
CREATE INDEX shifts_end_time_idx ON shifts (end_time);
CREATE INDEX shifts_shift_type_idx ON shifts (shift_type);
CREATE INDEX shifts_priority_idx ON shifts (priority);

-- ---------------------------------------------------------------------------------------------
-- Seed: tracking and monitoring
-- ---------------------------------------------------------------------------------------------
CREATE INDEX attendance_shift_id_idx ON attendance (shift_id);
CREATE INDEX attendance_agent_id_idx ON attendance (agent_id, clock_in_time);
CREATE INDEX attendance_status_idx ON attendance (status);
CREATE INDEX attendance_clock_in_time_idx ON attendance (clock_in_time);
CREATE INDEX attendance_clock_out_time_idx ON attendance (clock_out_time);

-- location_tracking is the hot insert path: every index here is paid for on every row of
-- every COPY, so each one must earn its place (see docs/architecture.md, "Storage").
-- Composite: an agent's history in time order, and its latest position (first entry).
CREATE INDEX location_tracking_agent_id_idx ON location_tracking (agent_id, "timestamp" DESC);
-- Partial: only fixes taken during a shift are ever looked up by shift.
CREATE INDEX location_tracking_shift_id_idx ON location_tracking (shift_id)
    WHERE shift_id IS NOT NULL;
-- BRIN: rows arrive in (nearly) time order, so a block-range index answers time-window
-- queries for a tiny fraction of a B-tree's size and insert cost.
CREATE INDEX location_tracking_timestamp_idx ON location_tracking USING brin ("timestamp");

-- ---------------------------------------------------------------------------------------------
-- Seed: reporting
-- ---------------------------------------------------------------------------------------------
CREATE INDEX reports_shift_id_idx ON reports (shift_id);
CREATE INDEX reports_site_id_idx ON reports (site_id);
CREATE INDEX reports_agent_id_idx ON reports (agent_id);
CREATE INDEX reports_report_type_idx ON reports (report_type);
CREATE INDEX reports_status_idx ON reports (status);
CREATE INDEX reports_priority_idx ON reports (priority);
CREATE INDEX reports_submitted_at_idx ON reports (submitted_at);

-- ---------------------------------------------------------------------------------------------
-- The daemon's own queries
-- ---------------------------------------------------------------------------------------------
-- At most one open attendance per agent (clock-in refuses a second one), and the lookup of
-- that open row on every break/clock-out.
CREATE UNIQUE INDEX attendance_open_agent_idx ON attendance (agent_id)
    WHERE status IN ('CLOCKED_IN', 'ON_BREAK');

-- Auto-fill: unassigned, schedulable shifts in a time window.
CREATE INDEX shifts_unassigned_start_time_idx ON shifts (start_time)
    WHERE agent_id IS NULL AND deleted_at IS NULL AND status = 'SCHEDULED';

-- Skill matching for candidate pruning.
CREATE INDEX agents_skills_idx ON agents USING gin (skills);

-- Device-token authentication of a WebSocket upgrade, and listing an agent's live tokens.
CREATE INDEX api_keys_agent_id_idx ON api_keys (agent_id) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id) WHERE revoked_at IS NULL;

-- Users of one client (CLIENT role scoping).
CREATE INDEX users_client_id_idx ON users (client_id) WHERE client_id IS NOT NULL;

-- Assignment history of a shift and of an agent (familiarity cost: "has worked here").
CREATE INDEX shift_assignments_shift_id_idx ON shift_assignments (shift_id);
CREATE INDEX shift_assignments_agent_id_idx ON shift_assignments (agent_id, assigned_at);

-- Open breaches: at most one open violation per agent and site (the dwell logic reopens
-- nothing twice), and the console's snapshot of open alerts.
CREATE UNIQUE INDEX geofence_violations_open_idx ON geofence_violations (agent_id, site_id)
    WHERE resolved_at IS NULL;
CREATE INDEX geofence_violations_site_id_idx ON geofence_violations (site_id, started_at);

CREATE INDEX geofence_validations_agent_id_idx ON geofence_validations (agent_id, validated_at);
CREATE INDEX geofence_validations_site_id_idx ON geofence_validations (site_id, validated_at);

-- Checkpoints of a site, and patrol scans by agent and by checkpoint.
CREATE INDEX qr_codes_site_id_idx ON qr_codes (site_id) WHERE deleted_at IS NULL;
CREATE INDEX qr_code_scans_agent_id_idx ON qr_code_scans (agent_id, scanned_at);
CREATE INDEX qr_code_scans_qr_code_id_idx ON qr_code_scans (qr_code_id, scanned_at);

-- Approved time off overlapping a shift (a hard assignment rule).
CREATE INDEX time_off_requests_agent_id_idx ON time_off_requests (agent_id, start_date, end_date);

-- A user's unread notifications, newest first.
CREATE INDEX notifications_recipient_unread_idx ON notifications (recipient_id, created_at DESC)
    WHERE read_at IS NULL;

CREATE INDEX messages_recipient_id_idx ON messages (recipient_id, sent_at);
CREATE INDEX messages_sender_id_idx ON messages (sender_id, sent_at);
CREATE INDEX media_files_report_id_idx ON media_files (report_id) WHERE report_id IS NOT NULL;
CREATE INDEX report_workflows_report_id_idx ON report_workflows (report_id, step);
CREATE INDEX client_requests_client_id_idx ON client_requests (client_id, status);

-- Audit trail: one entity's history, one user's actions, and time windows (append-only).
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity_type, entity_id, created_at);
CREATE INDEX audit_logs_user_id_idx ON audit_logs (user_id, created_at);
CREATE INDEX audit_logs_created_at_idx ON audit_logs USING brin (created_at);
