-- location_tracking: a key and index layout measured for the ingest path (issue 6).
--
-- Every accepted device event is one row here, written by binary COPY in batches. Measured on
-- the 2-core benchmark machine (PostgreSQL 15, fsync on, 1M rows from 10,000 agents arriving
-- interleaved in time order, COPY in one statement; script and figures in
-- docs/performance.md, "Table layout"):
--
--   random-UUID id primary key + FKs to agents and shifts + UNIQUE (agent_id, seq)
--     + (agent_id, timestamp DESC) + partial shift_id + BRIN timestamp      ~33,000 rows/s
--   the same without the two foreign keys                                  ~54,000-64,000
--   PRIMARY KEY (agent_id, seq) + BRIN timestamp (this migration)         ~158,000 rows/s
--
-- What costs: each foreign-key check is a row lock on the parent (agents, shifts) per inserted
-- row; and every B-tree that leads with agent_id touches one leaf page per agent in every
-- batch (10,000 scattered pages, each logged in full after a checkpoint). So the table keeps
-- exactly one agent-leading B-tree, the one exactly-once delivery needs anyway.

-- 1. No per-row foreign-key checks. The daemon writes rows only for agents it has just
--    authenticated; deleting an agent still deletes its history (trigger below), and shift_id
--    becomes a historical reference like device_id and site_id (a deleted shift leaves it
--    dangling rather than costing a lock per row on the hottest path).
ALTER TABLE location_tracking
    DROP CONSTRAINT location_tracking_agent_id_fkey,
    DROP CONSTRAINT location_tracking_shift_id_fkey;

-- 2. The key is the event's identity: (agent_id, seq). The random id column is gone (nothing
--    referenced it); the separate unique constraint becomes the primary key. It keeps the
--    seed's index name because it is the agent's location history, in event order (seq only
--    grows for an agent, across devices and reconnects), and it answers "latest fix of this
--    agent" by reading backwards from (agent_id, max seq).
DROP INDEX location_tracking_agent_id_idx;
ALTER TABLE location_tracking DROP CONSTRAINT location_tracking_agent_seq_key;
ALTER TABLE location_tracking DROP COLUMN id;
ALTER TABLE location_tracking
    ADD CONSTRAINT location_tracking_agent_id_idx PRIMARY KEY (agent_id, seq);

-- 3. Shift-based look-ups are for the shift's events (clock-in/out, scans, breaks, panics):
--    about 1 % of rows. A shift's positions are its agent's rows within the shift's window,
--    found through the key above. Indexing every position by shift would be a second
--    agent-scattered B-tree (96,000 instead of 158,000 rows/s when positions carry a shift).
DROP INDEX location_tracking_shift_id_idx;
CREATE INDEX location_tracking_shift_id_idx ON location_tracking (shift_id)
    WHERE shift_id IS NOT NULL AND event_type <> 'position';

-- (location_tracking_timestamp_idx, the BRIN on "timestamp", stays as it is.)

-- 4. ON DELETE CASCADE from agents, kept without the per-row check: one statement-level
--    trigger deletes the history of the deleted agents through the primary key.
CREATE FUNCTION location_tracking_delete_agents_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM location_tracking t USING deleted_agents d WHERE t.agent_id = d.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_delete_location_tracking
    AFTER DELETE ON agents
    REFERENCING OLD TABLE AS deleted_agents
    FOR EACH STATEMENT EXECUTE FUNCTION location_tracking_delete_agents_history();
