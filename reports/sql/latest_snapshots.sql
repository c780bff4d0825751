-- The latest snapshot of each host is what v_latest_snapshots says, nowhere else.
SELECT host_id, snapshot_id FROM v_latest_snapshots
