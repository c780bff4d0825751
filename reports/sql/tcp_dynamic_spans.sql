-- The distinct TCP dynamic ranges of the state spans of some hosts that hold evidence (excluded
-- ranges or a bind sweep), per family; a row with no start for a family some such snapshot
-- did not capture. Distinct in the database: the ranges repeat on nearly every night.
WITH evidence AS (
  SELECT DISTINCT dynamic_set_id FROM state_spans
   WHERE host_id IN :ids AND (excluded_set_id IS NOT NULL OR bind_failure_set_id IS NOT NULL)
), families AS (
  SELECT 'ipv4' AS family UNION ALL SELECT 'ipv6'
)
SELECT DISTINCT d.family, d.start_port AS start, d.port_count AS count
  FROM dynamic_ranges d JOIN evidence e ON e.dynamic_set_id = d.set_id
 WHERE d.protocol = 'tcp'
UNION
SELECT f.family, NULL, NULL
  FROM families f
 WHERE EXISTS (SELECT 1 FROM evidence e
                WHERE e.dynamic_set_id IS NULL
                   OR NOT EXISTS (SELECT 1 FROM dynamic_ranges d
                                   WHERE d.set_id = e.dynamic_set_id AND d.protocol = 'tcp'
                                     AND d.family = f.family))
