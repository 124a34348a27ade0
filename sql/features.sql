-- One feature row per entity and tumbling window. Add a column here and list it under
-- features.columns in conf/job.yaml; no Python changes.
CREATE VIEW features AS
SELECT
  entity,
  window_start,
  window_end,
  AVG(x1) AS x1_avg,
  AVG(x2) AS x2_avg,
  -- A window's label: whether any of its events was positive.
  MAX(CAST(label AS INT)) = 1 AS label
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '${window.size_seconds}' SECOND))
GROUP BY entity, window_start, window_end;
