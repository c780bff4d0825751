-- IPv4 and IPv6 print the same exclusions: families merged.
SELECT DISTINCT set_id, protocol, start_port AS start, end_port AS "end", administered
  FROM excluded_ranges
 WHERE set_id IN :ids
