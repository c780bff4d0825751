-- The collection attempts the report tells of: for each host, those from its last one that got
-- something on (its last attempt and the failures since), and every failed one. The good
-- attempts before the last of a host grow with every night and tell nothing here.
WITH last_good AS (
  SELECT host_id, MAX(started_at) AS started_at
    FROM attempts
   WHERE status <> 'failed' AND host_id IS NOT NULL
   GROUP BY host_id
)
SELECT a.id, a.host_id, h.name AS host, a.source, a.started_at, a.status, a.error_class,
       a.message
  FROM attempts a
  LEFT JOIN hosts h ON h.id = a.host_id
  LEFT JOIN last_good g ON g.host_id = a.host_id
 WHERE a.status = 'failed' OR g.started_at IS NULL OR a.started_at >= g.started_at
