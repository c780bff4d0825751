SELECT s.id AS snapshot_id, f.name, f.state
  FROM snapshots s JOIN features f ON f.set_id = s.feature_set_id
 WHERE s.id IN :ids
