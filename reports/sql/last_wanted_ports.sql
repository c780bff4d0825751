-- The wanted ports the latest collection run that recorded some was given (JSON text).
SELECT id AS run_id, started_at, wanted_ports
  FROM collection_runs
 WHERE wanted_ports IS NOT NULL
 ORDER BY started_at DESC, id DESC
 LIMIT 1
