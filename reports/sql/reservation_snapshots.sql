-- The snapshots whose excluded ranges were captured: where reservation growth can show.
SELECT s.host_id, h.name AS host, s.id AS snapshot_id, s.taken_at, s.excluded_set_id
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
 WHERE s.excluded_set_id IS NOT NULL
