-- The TCP findings of every finding set that cover any of up to eight ports (p1 to p8, the
-- unused ones NULL), with what decides a port's status (reports.findings.port_statuses): the
-- sets are many, so only those columns, and the findings are read once for all the ports.
SELECT set_id, protocol, family, start_port AS start, end_port AS "end", diagnosis, error_code
  FROM findings
 WHERE protocol = 'tcp'
   AND ((start_port <= :p1 AND end_port >= :p1) OR (start_port <= :p2 AND end_port >= :p2)
     OR (start_port <= :p3 AND end_port >= :p3) OR (start_port <= :p4 AND end_port >= :p4)
     OR (start_port <= :p5 AND end_port >= :p5) OR (start_port <= :p6 AND end_port >= :p6)
     OR (start_port <= :p7 AND end_port >= :p7) OR (start_port <= :p8 AND end_port >= :p8))
 ORDER BY id
