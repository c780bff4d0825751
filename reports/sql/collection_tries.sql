-- The tries of each host in each collection run (imports are not nights of a host).
SELECT a.id, a.run_id, h.name AS host, a.status, a.error_class, a.message, a.finished_at
  FROM attempts a JOIN hosts h ON h.id = a.host_id
  JOIN collection_runs r ON r.id = a.run_id
 WHERE r.kind IN ('collect', 'demo')
 ORDER BY a.run_id, a.id
