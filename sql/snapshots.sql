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
  -- Kafka's own partitioner, murmur2 of the key: the snapshot and features topics put a key on the same
  -- partition number, so a replica following some partitions of both (serving.partitions) holds its
  -- model and its features, and a router computes where a key lives (serving/partitions.py).
  'sink.partitioner' = 'default',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = '${sinks.snapshot_delivery}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  -- A producer waits for a broker that is away (to send, commit or abort) as long as a transaction may
  -- stay open, where Kafka's defaults give up after 60 s (a call) and 120 s (a record): Flink's Kafka
  -- sink fails its task on such an error and throws it again while closing, which Flink answers by
  -- stopping the whole TaskManager (README: Checkpoints and delivery).
  'properties.max.block.ms' = '${sinks.transaction_timeout_ms}',
  'properties.delivery.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-snapshots'
);
