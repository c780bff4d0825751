-- The tries of each host in the collection runs since the last one that reached it (imports
-- are not nights of a host): what a streak of failed nights is counted from.
WITH reached AS (
  SELECT g.host_id, MAX(g.run_id) AS run_id
    FROM attempts g JOIN collection_runs gr ON gr.id = g.run_id
   WHERE gr.kind IN ('collect', 'demo') AND g.status <> 'failed'
   GROUP BY g.host_id
)
SELECT a.id, a.run_id, h.name AS host, a.status, a.error_class, a.message, a.finished_at
  FROM attempts a JOIN hosts h ON h.id = a.host_id
  JOIN collection_runs r ON r.id = a.run_id
  LEFT JOIN reached ON reached.host_id = a.host_id
 WHERE r.kind IN ('collect', 'demo') AND a.run_id > COALESCE(reached.run_id, 0)
 ORDER BY a.run_id, a.id
