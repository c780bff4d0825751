-- How each fix held in each snapshot of its host taken at or after it.
SELECT fix_id, snapshot_id, taken_at, outcome, port, diagnosis
  FROM fix_checks
 ORDER BY fix_id, taken_at, snapshot_id
