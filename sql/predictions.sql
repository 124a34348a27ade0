-- Every prediction the learner makes, before it learns from the row.
CREATE TABLE predictions (
  model_key STRING,
  window_end_ms BIGINT,
  prediction DOUBLE,
  model_version BIGINT
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.predictions.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  'value.format' = 'json',
  'sink.delivery-guarantee' = '${sinks.delivery_guarantee}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-predictions'
);
