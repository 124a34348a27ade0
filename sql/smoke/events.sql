-- Smoke pipeline source: JSON events from Kafka.
CREATE TABLE smoke_events (
  id BIGINT,
  `user` STRING,
  amount DOUBLE
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.events.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'properties.group.id' = '${source.group_id}',
  'scan.startup.mode' = '${source.startup_mode}',
  'format' = 'json'
);
