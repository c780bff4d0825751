-- The snapshots of some hosts, with the content sets that say which ports were taken.
SELECT id AS snapshot_id, host_id, taken_at, excluded_set_id, bind_failure_set_id,
       listener_set_id
  FROM snapshots
 WHERE host_id IN :ids
