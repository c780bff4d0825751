SELECT snapshot_id FROM v_latest_snapshots WHERE host_id = :host_id
