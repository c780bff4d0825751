-- Each snapshot of one host whose excluded ranges were captured, oldest first, with the
-- administered TCP range that covers the port in it (NULL where none does).
SELECT s.id AS snapshot_id, s.taken_at, MIN(r.start_port) AS start, MIN(r.end_port) AS "end"
  FROM snapshots s
  LEFT JOIN excluded_ranges r
    ON r.set_id = s.excluded_set_id AND r.protocol = 'tcp' AND r.administered
   AND r.start_port <= :port AND r.end_port >= :port
 WHERE s.host_id = :host_id AND s.excluded_set_id IS NOT NULL
 GROUP BY s.id, s.taken_at
 ORDER BY s.taken_at, s.id
