-- Concept drifts the learner detected, one record per key and detection, with the action taken.
CREATE TABLE drift_events (
  model_key STRING,
  window_end_ms BIGINT,
  model_version BIGINT,
  action STRING,
  drift_count BIGINT,
  detected_at_ms BIGINT
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.drifts.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  'value.format' = 'json',
  'sink.delivery-guarantee' = '${sinks.delivery_guarantee}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'properties.max.block.ms' = '${sinks.transaction_timeout_ms}',  -- why: sql/snapshots.sql
  'properties.delivery.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-drifts'
);
