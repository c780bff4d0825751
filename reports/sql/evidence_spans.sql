-- The state spans of some hosts that hold evidence (excluded ranges or a bind sweep), with the
-- content sets that say which ports were taken, and how many nights each held them.
SELECT last_snapshot_id AS snapshot_id, host_id, first_at, last_at, nights, excluded_set_id,
       bind_failure_set_id, listener_set_id
  FROM state_spans
 WHERE host_id IN :ids AND (excluded_set_id IS NOT NULL OR bind_failure_set_id IS NOT NULL)
