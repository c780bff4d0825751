-- The wanted ports the latest run that recorded some collected for (collect takes them from its
-- config): a report made without a config falls back on them.
SELECT id AS run_id, started_at, wanted_ports
  FROM collection_runs
 WHERE wanted_ports IS NOT NULL
 ORDER BY started_at DESC, id DESC
 LIMIT 1
