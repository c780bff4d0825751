SELECT s.id AS snapshot_id, v.name, v.status
  FROM snapshots s JOIN services v ON v.set_id = s.service_set_id
 WHERE s.id IN :ids
