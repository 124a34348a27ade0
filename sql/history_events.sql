-- History for scripts/backfill.sh: the same raw events as sql/events.sql, read from files instead of
-- Kafka, so that sql/checked_events.sql and everything after it runs unchanged. A file holds one row per
-- event with its original bytes in the column `payload` (Parquet: a binary column), in event-time order
-- (a row more than source.watermark_delay_seconds behind the newest before it is late: dead-lettered).
-- ${history.path} is backfill.sh's --from: a file or a folder of them.
-- 'source.monitor-interval' keeps the source running after the last file, unbounded: a finished job
-- cannot be savepointed, and backfill.sh stops this one with a savepoint once it has read every row.
CREATE TABLE events_raw (
  payload BYTES,
  -- Not from Kafka: the dead letters of history name partition and offset -1.
  source_partition AS CAST(-1 AS INT),
  source_offset AS CAST(-1 AS BIGINT),
  event_time AS UTC_TIMESTAMP_OF(EVENT_TIME_MILLIS(JSON_FIELDS(payload, 'ts')[1], ${events.max_ahead_seconds})),
  WATERMARK FOR event_time AS event_time - INTERVAL '${source.watermark_delay_seconds}' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${history.path}',
  'format' = '${history.format}',
  'source.monitor-interval' = '${history.monitor_interval}'
);
