SELECT snapshot_id, name, state FROM features WHERE snapshot_id IN :ids
