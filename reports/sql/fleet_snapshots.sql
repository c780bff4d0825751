-- Every snapshot with its host, its time, its finding set and whether it swept the ports.
SELECT s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.finding_set_id,
       CASE WHEN s.bind_failure_set_id IS NULL THEN 0 ELSE 1 END AS swept
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
