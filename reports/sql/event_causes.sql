SELECT event_id, cause_kind AS kind, cause, detail, reported_at AS at, cause_at
  FROM v_event_causes
