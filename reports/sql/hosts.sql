SELECT id AS host_id, name AS host FROM hosts
