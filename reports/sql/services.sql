SELECT snapshot_id, name, status FROM services WHERE snapshot_id IN :ids
