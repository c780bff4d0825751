SELECT id AS snapshot_id, taken_at, finding_set_id,
       CASE WHEN bind_failure_set_id IS NULL THEN 0 ELSE 1 END AS swept,
       CASE WHEN excluded_set_id IS NULL THEN 0 ELSE 1 END AS excluded_known
  FROM snapshots
 WHERE host_id = :host_id
 ORDER BY taken_at, id
