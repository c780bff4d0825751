-- The TCP ports some bind failure sets ever had failing, as spans.
SELECT DISTINCT start_port AS start, end_port AS "end"
  FROM bind_failures
 WHERE set_id IN :ids AND protocol = 'tcp'
