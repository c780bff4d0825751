-- The distinct days some hosts' evidence was taken on (excluded ranges or a bind sweep). A day
-- is the first ten characters of the stored naive UTC time, on SQLite and PostgreSQL alike;
-- counted in the database, the nights are never read one by one.
SELECT DISTINCT substr(CAST(taken_at AS TEXT), 1, 10) AS day
  FROM snapshots
 WHERE host_id IN :ids AND (excluded_set_id IS NOT NULL OR bind_failure_set_id IS NOT NULL)
