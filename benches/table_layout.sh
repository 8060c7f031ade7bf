#!/usr/bin/env bash
# The location_tracking layout experiment behind migration 20261126100000 (docs/performance.md,
# "Table layout"): 1M GPS rows from 10,000 agents, interleaved in time order as the daemon's
# batches are, written by one binary COPY into each candidate layout.
#
# Usage: PSQL="psql -h <socket dir> -p <port> -U postgres -d <scratch db>" benches/table_layout.sh
# The scratch database must have the first two migrations applied (the tables and agents'
# foreign keys exist) and the connection must be a superuser (server-side COPY files).
# It creates tables t, src, src2, agents and users rows; use a throwaway database.
set -euo pipefail
: "${PSQL:?set PSQL to a psql command line for a scratch database}"
DIR=${DIR:-/tmp}
$PSQL -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO users (email, password_hash, role, first_name, last_name)
  SELECT 'layout' || i || '@x', 'h', 'AGENT', 'f', 'l' FROM generate_series(1, 10000) i;
INSERT INTO agents (user_id, employee_id) SELECT id, email FROM users WHERE email LIKE 'layout%';
DROP TABLE IF EXISTS src, src2;
CREATE TABLE src AS
  SELECT a.id AS agent_id, NULL::uuid AS shift_id, a.id AS device_id, s::bigint AS seq,
         'position'::text AS event_type, 6.13 + random() * 0.01 AS lat, 1.22 + random() * 0.01 AS lon,
         5.0::real AS accuracy_m, NULL::real AS altitude_m, 1.2::real AS speed_mps, NULL::real AS heading_deg,
         80::smallint AS battery_pct, now() + s * interval '1 second' AS "timestamp", true AS is_trusted,
         NULL::text AS untrusted_reason, NULL::uuid AS site_id
  FROM generate_series(0, 99) s,
       (SELECT id, row_number() OVER () k FROM agents WHERE employee_id LIKE 'layout%') a
  ORDER BY s, k;
-- The same rows with a shift on every position (agents on duty).
CREATE TABLE src2 AS SELECT * FROM src;
UPDATE src2 SET shift_id = md5(agent_id::text)::uuid;
COPY src TO '$DIR/layout_src.bin' WITH (FORMAT binary);
COPY src2 TO '$DIR/layout_src2.bin' WITH (FORMAT binary);
SQL
COLS='agent_id, shift_id, device_id, seq, event_type, lat, lon, accuracy_m, altitude_m, speed_mps, heading_deg, battery_pct, "timestamp", is_trusted, untrusted_reason, site_id'
run() { # label, source file, DDL
  $PSQL -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS t; CREATE TABLE t (LIKE location_tracking INCLUDING DEFAULTS INCLUDING CONSTRAINTS); ALTER TABLE t ADD COLUMN IF NOT EXISTS id uuid DEFAULT gen_random_uuid(); $3" -c "CHECKPOINT"
  local s e
  s=$(date +%s.%N)
  $PSQL -q -v ON_ERROR_STOP=1 -c "COPY t ($COLS) FROM '$DIR/$2' WITH (FORMAT binary)"
  e=$(date +%s.%N)
  printf '%-75s %8.0f rows/s\n' "$1" "$(echo "1000000/($e-$s)" | bc -l)"
}
FK="ADD FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE, ADD FOREIGN KEY (shift_id) REFERENCES shifts(id) ON DELETE SET NULL"
run "random id PK, 2 FKs, UNIQUE(agent,seq), (agent,ts), partial shift, BRIN" layout_src.bin \
  "ALTER TABLE t ADD PRIMARY KEY (id), $FK, ADD UNIQUE (agent_id, seq); CREATE INDEX ON t (agent_id, \"timestamp\" DESC); CREATE INDEX ON t (shift_id) WHERE shift_id IS NOT NULL; CREATE INDEX ON t USING brin (\"timestamp\");"
run "  the same without the foreign keys" layout_src.bin \
  "ALTER TABLE t ADD PRIMARY KEY (id), ADD UNIQUE (agent_id, seq); CREATE INDEX ON t (agent_id, \"timestamp\" DESC); CREATE INDEX ON t (shift_id) WHERE shift_id IS NOT NULL; CREATE INDEX ON t USING brin (\"timestamp\");"
run "PK (agent,seq), (agent,ts), partial shift, BRIN" layout_src.bin \
  "ALTER TABLE t ADD PRIMARY KEY (agent_id, seq); CREATE INDEX ON t (agent_id, \"timestamp\" DESC); CREATE INDEX ON t (shift_id) WHERE shift_id IS NOT NULL; CREATE INDEX ON t USING brin (\"timestamp\");"
run "PK (agent,seq), partial shift, BRIN (positions without shift)" layout_src.bin \
  "ALTER TABLE t ADD PRIMARY KEY (agent_id, seq); CREATE INDEX ON t (shift_id) WHERE shift_id IS NOT NULL; CREATE INDEX ON t USING brin (\"timestamp\");"
run "PK (agent,seq), partial shift, BRIN (positions with a shift)" layout_src2.bin \
  "ALTER TABLE t ADD PRIMARY KEY (agent_id, seq); CREATE INDEX ON t (shift_id) WHERE shift_id IS NOT NULL; CREATE INDEX ON t USING brin (\"timestamp\");"
run "PK (agent,seq), BRIN = migration 20261126100000 (positions with a shift)" layout_src2.bin \
  "ALTER TABLE t ADD PRIMARY KEY (agent_id, seq); CREATE INDEX ON t USING brin (\"timestamp\");"
run "id PK only (reference)" layout_src.bin "ALTER TABLE t ADD PRIMARY KEY (id);"
run "no index (reference)" layout_src.bin ""
$PSQL -q -c "DROP TABLE t, src, src2"
