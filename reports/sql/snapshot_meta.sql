SELECT s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.source, s.os_build,
       s.last_boot_at, s.docker_version, s.wsl_version, s.excluded_set_id,
       s.bind_failure_set_id, s.listener_set_id, s.finding_set_id
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
 WHERE s.id IN :ids
