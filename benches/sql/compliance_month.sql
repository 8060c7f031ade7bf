-- A month of guard tours for 100 sites, to time the compliance report
-- (docs/performance.md, "Compliance report"). Run against a migrated, otherwise empty database:
--   psql "$DATABASE_URL" -f benches/sql/compliance_month.sql
-- 100 sites x 30 days x 3 shifts of 8 hours x a round every 30 minutes = 144,000 rounds.
BEGIN;
INSERT INTO clients (company_name) VALUES ('Compliance month');
INSERT INTO sites (client_id, name, geofence, geofence_shape, center_lat, center_lon, radius_m)
SELECT c.id, 'Site ' || i, '{"type":"Circle","center":[1.2,6.1],"radius_m":100}', 'CIRCLE', 6.1, 1.2, 100
FROM clients c, generate_series(1, 100) i WHERE c.company_name = 'Compliance month';
WITH u AS (
    INSERT INTO users (email, password_hash, role, first_name, last_name)
    SELECT 'month-' || i || '@example.test', '!', 'AGENT', 'Guard', i::text FROM generate_series(1, 300) i
    RETURNING id, email)
INSERT INTO agents (user_id, employee_id) SELECT id, 'M-' || email FROM u;
INSERT INTO tours (site_id, name, interval_min, window_min)
SELECT id, 'Perimeter', 30, 20 FROM sites WHERE name LIKE 'Site %';
WITH s AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM sites WHERE name LIKE 'Site %'),
     a AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM agents WHERE employee_id LIKE 'M-%')
INSERT INTO shifts (site_id, agent_id, start_time, end_time, status)
SELECT s.id, a.id,
       date_trunc('day', now()) - interval '30 days' + d * interval '1 day' + k * interval '8 hours',
       date_trunc('day', now()) - interval '30 days' + d * interval '1 day' + (k + 1) * interval '8 hours',
       'COMPLETED'
FROM s CROSS JOIN generate_series(0, 29) d CROSS JOIN generate_series(0, 2) k
JOIN a ON a.n = (s.n - 1) * 3 + k + 1;
INSERT INTO tour_rounds (tour_id, shift_id, site_id, agent_id, round_no, opens_at, closes_at, late_until,
                         status, expected, on_time, late, out_of_order, missed, closed_at, finalized)
SELECT t.id, sh.id, sh.site_id, sh.agent_id, r,
       sh.start_time + r * interval '30 minutes',
       sh.start_time + r * interval '30 minutes' + interval '20 minutes',
       sh.start_time + (r + 1) * interval '30 minutes',
       (ARRAY['COMPLETED', 'COMPLETED', 'COMPLETED', 'PARTIAL', 'MISSED'])[1 + (r + extract(day FROM sh.start_time)::int) % 5]::"TourRoundStatus",
       5, 4, 1, 0, 0, now(), true
FROM shifts sh JOIN tours t ON t.site_id = sh.site_id CROSS JOIN generate_series(0, 15) r
WHERE sh.status = 'COMPLETED';
COMMIT;
ANALYZE;
SELECT count(*) AS rounds FROM tour_rounds;
