-- The TCP findings of every finding set that cover one port.
SELECT set_id, protocol, family, start_port AS start, end_port AS "end", diagnosis,
       dynamic_start, dynamic_end, dynamic_captured, in_dynamic, error_code, administered,
       range_start, range_end, block_start, block_end, pid, process, holder, fixes
  FROM findings
 WHERE protocol = 'tcp' AND start_port <= :port AND end_port >= :port
 ORDER BY id
