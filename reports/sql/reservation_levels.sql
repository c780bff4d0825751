-- Per excluded set, the ports its run-time blocks (not administered, of at least the smallest
-- run-time block of ports) reach, families merged; a set with none has no row. Summed in the
-- database: the ranges of the sets are many, their levels one number each.
SELECT set_id, SUM("end" - start + 1) AS ports
  FROM (SELECT DISTINCT set_id, protocol, start_port AS start, end_port AS "end"
          FROM excluded_ranges
         WHERE NOT administered AND end_port - start_port + 1 >= :min_block
           AND set_id IN (SELECT excluded_set_id FROM state_spans)) AS blocks
 GROUP BY set_id
