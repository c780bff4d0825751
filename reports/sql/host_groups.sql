-- Every host with its groups, as JSON text (SQLite keeps it as text, PostgreSQL as json).
SELECT id AS host_id, name AS host, CAST(groups AS TEXT) AS groups FROM hosts
