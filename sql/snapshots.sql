-- Versioned model snapshots (udfs/envelope.py bytes), keyed by model key on a compacted topic.
-- Delivered as sinks.snapshot_delivery says: at-least-once sends each as it is published.
CREATE TABLE model_snapshots (
  model_key STRING,
  envelope BYTES
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.snapshots.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = '${sinks.snapshot_delivery}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-snapshots'
);
