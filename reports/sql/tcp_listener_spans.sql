-- The TCP ports the listeners of some hosts' evidence (state spans that read the ranges or
-- swept the ports) ever held, as one-port spans. Distinct in the database.
SELECT DISTINCT port AS start, port AS "end"
  FROM listeners
 WHERE protocol = 'tcp'
   AND set_id IN (SELECT listener_set_id FROM state_spans
                   WHERE host_id IN :ids
                     AND (excluded_set_id IS NOT NULL OR bind_failure_set_id IS NOT NULL))
