-- Every fix, recorded or detected, with its host's name, oldest first.
SELECT x.id, x.key, h.name AS host, x.host_id, x.source, x.action, x.start_port, x.end_port,
       x.applied_at, x.recorded_by, x.note
  FROM fixes x JOIN hosts h ON h.id = x.host_id
 ORDER BY x.applied_at, x.id
