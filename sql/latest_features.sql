-- Each key's latest window features (udfs/feature_records.py JSON), keyed by model key on a
-- compacted topic, so serving can predict for a key without the caller sending features.
CREATE TABLE latest_features (
  model_key STRING,
  record BYTES
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.features.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  -- Kafka's own partitioner, murmur2 of the key: the snapshot and features topics put a key on the same
  -- partition number, so a replica following some partitions of both (serving.partitions) holds its
  -- model and its features, and a router computes where a key lives (serving/partitions.py).
  'sink.partitioner' = 'default',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = '${sinks.delivery_guarantee}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'properties.max.block.ms' = '${sinks.transaction_timeout_ms}',  -- why: sql/snapshots.sql
  'properties.delivery.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-features'
);
