-- The finding sets whose IPv4 TCP findings put one port at risk or reserve it.
SELECT DISTINCT set_id, diagnosis
  FROM findings
 WHERE protocol = 'tcp' AND family = 'ipv4' AND start_port <= :port AND end_port >= :port
   AND diagnosis IN ('at-risk', 'reserved', 'probably-reserved')
