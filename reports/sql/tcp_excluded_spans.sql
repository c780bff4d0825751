-- The TCP ports some excluded sets ever covered, as spans.
SELECT DISTINCT start_port AS start, end_port AS "end"
  FROM excluded_ranges
 WHERE set_id IN :ids AND protocol = 'tcp'
