-- One row per book and window: how it was viewed and bought. With features.label_delay_windows: 1,
-- the model of a book learns to predict the next window's purchases from this window's activity.
CREATE VIEW features AS
SELECT
  book,
  window_start,
  window_end,
  CAST(COUNT(*) FILTER (WHERE action = 'view') AS DOUBLE) AS view_count,
  CAST(COUNT(*) FILTER (WHERE action = 'purchase') AS DOUBLE) AS purchase_count,
  CAST(COUNT(DISTINCT `user`) AS DOUBLE) AS visitor_count,
  CAST(COUNT(*) FILTER (WHERE action = 'purchase') AS DOUBLE) AS purchases_label
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '${window.size_seconds}' SECOND))
GROUP BY book, window_start, window_end;
