SELECT a.id, a.host_id, h.name AS host, a.source, a.started_at, a.status, a.error_class,
       a.message
  FROM attempts a LEFT JOIN hosts h ON h.id = a.host_id
