-- The TCP ports some hosts' evidence (state spans that read the ranges or swept the ports)
-- ever had failing. Distinct in the database: the sets are many, their ranges repeat.
SELECT DISTINCT start_port AS start, end_port AS "end"
  FROM bind_failures
 WHERE protocol = 'tcp'
   AND set_id IN (SELECT bind_failure_set_id FROM state_spans
                   WHERE host_id IN :ids
                     AND (excluded_set_id IS NOT NULL OR bind_failure_set_id IS NOT NULL))
