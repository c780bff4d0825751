SELECT event_id, host, kind, at, previous_at, protocol, family, start_port AS start,
       end_port AS "end", previous_start, previous_end, ports, administered, snapshot_id,
       previous_snapshot_id
  FROM v_change_events
 ORDER BY event_id
