-- The stored candidate causes of one host, with its name (as candidate_causes reads them).
SELECT c.host_id, h.name AS host, c.snapshot_id, c.seen_at, c.window_start, c.cause_at,
       c.kind, c.cause, c.detail, c.at, c.exposure
  FROM candidate_causes c JOIN hosts h ON h.id = c.host_id
 WHERE c.host_id = :host_id
 ORDER BY c.id
