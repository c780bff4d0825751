-- The state spans whose excluded ranges were captured: where reservation growth can show. A
-- span's first snapshot and time stand for it; its nights share its excluded set.
SELECT sp.host_id, h.name AS host, sp.first_snapshot_id AS snapshot_id, sp.first_at AS taken_at,
       sp.last_at, sp.nights, sp.excluded_set_id
  FROM state_spans sp JOIN hosts h ON h.id = sp.host_id
 WHERE sp.excluded_set_id IS NOT NULL
