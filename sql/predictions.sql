-- Every prediction the learner makes, before it learns from the row (udfs/prediction.py): `prediction`
-- is a regressor's value, a boolean classifier's probability of true, or another classifier's
-- probability of its predicted class; `predicted` the class and `probabilities` every known class's
-- probability by name (both null for a regressor).
CREATE TABLE predictions (
  model_key STRING,
  window_end_ms BIGINT,
  prediction DOUBLE,
  model_version BIGINT,
  predicted STRING,
  probabilities MAP<STRING, DOUBLE>
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.predictions.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  'value.format' = 'json',
  'sink.delivery-guarantee' = '${sinks.delivery_guarantee}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'properties.max.block.ms' = '${sinks.transaction_timeout_ms}',  -- why: sql/snapshots.sql
  'properties.delivery.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-predictions'
);
