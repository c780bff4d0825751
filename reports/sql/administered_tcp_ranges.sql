-- The administered (starred) TCP excluded ranges of every excluded set a state span holds.
SELECT DISTINCT set_id, start_port AS start, end_port AS "end"
  FROM excluded_ranges
 WHERE administered AND protocol = 'tcp'
   AND set_id IN (SELECT excluded_set_id FROM state_spans)
