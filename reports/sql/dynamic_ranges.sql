SELECT s.id AS snapshot_id, d.protocol, d.family, d.start_port AS start, d.port_count AS count
  FROM snapshots s JOIN dynamic_ranges d ON d.set_id = s.dynamic_set_id
 WHERE s.id IN :ids
