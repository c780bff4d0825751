-- The TCP ports some listener sets ever held, as one-port spans.
SELECT DISTINCT port AS start, port AS "end"
  FROM listeners
 WHERE set_id IN :ids AND protocol = 'tcp'
