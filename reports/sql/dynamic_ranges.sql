SELECT snapshot_id, protocol, family, start_port AS start, port_count AS count
  FROM dynamic_ranges
 WHERE snapshot_id IN :ids
