-- Raw events from Kafka, with event time and a watermark that allows late events.
CREATE TABLE events (
  entity STRING,
  x1 DOUBLE,
  x2 DOUBLE,
  label BOOLEAN,
  ts BIGINT,                                   -- event time, epoch milliseconds
  event_time AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR event_time AS event_time - INTERVAL '${source.watermark_delay_seconds}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.events.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'properties.group.id' = '${source.group_id}',
  'scan.startup.mode' = '${source.startup_mode}',
  'properties.auto.offset.reset' = 'earliest',
  'scan.bounded.mode' = '${source.bounded_mode}',
  'scan.watermark.idle-timeout' = '${source.idle_timeout}',
  'format' = 'json'
);
