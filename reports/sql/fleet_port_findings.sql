-- The TCP findings of every finding set that cover one port, with what decides the port's
-- status (reports.findings.port_statuses): the sets are many, so only those columns.
SELECT set_id, protocol, family, start_port AS start, end_port AS "end", diagnosis, error_code
  FROM findings
 WHERE protocol = 'tcp' AND start_port <= :port AND end_port >= :port
 ORDER BY id
