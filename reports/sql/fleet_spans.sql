-- Every state span (collector.store.spans: a host's run of nights with the same content sets),
-- with its host, its nights, its finding set and whether it swept the ports.
SELECT sp.id AS span_id, sp.host_id, h.name AS host, sp.first_snapshot_id, sp.first_at,
       sp.last_at, sp.nights, sp.finding_set_id,
       CASE WHEN sp.bind_failure_set_id IS NULL THEN 0 ELSE 1 END AS swept
  FROM state_spans sp JOIN hosts h ON h.id = sp.host_id
