-- Phone apps over HTTP (issue 16: Traccar Client / OsmAnd, OwnTracks) send no sequence
-- numbers. Their events are numbered from the fix time in a range the WebSocket protocol
-- cannot use (seq there is 0 .. 2^63-1): 2^63 + Unix milliseconds, which is negative in this
-- bigint column. So a replayed fix is stored once under its (agent_id, seq) key, and a phone
-- that also speaks the WebSocket never collides with itself. Only positions and panics
-- (an app's SOS) come from the apps.
ALTER TABLE location_tracking DROP CONSTRAINT location_tracking_seq_check;
-- Checking the new constraint reads every existing row while the table is locked (the
-- migration is one transaction): seconds per ten million rows (docs/operations.md,
-- "Migrations").
ALTER TABLE location_tracking ADD CONSTRAINT location_tracking_seq_check
    CHECK (seq >= 0 OR event_type IN ('position', 'panic'));
