-- Every snapshot with its host, its time and its finding set.
SELECT id AS snapshot_id, host_id, taken_at, finding_set_id FROM snapshots
