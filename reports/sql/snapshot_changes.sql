-- The change events of the window that ended with one snapshot.
SELECT kind, protocol, start_port AS start, end_port AS "end", previous_start, previous_end,
       at, previous_at
  FROM v_change_events
 WHERE snapshot_id = :snapshot_id
 ORDER BY event_id
