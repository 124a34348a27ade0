"""Follows the snapshot and features topics: every partition from the earliest offset,
read_committed, no consumer group (every replica sees every record); valid snapshots go to the model
registry, feature rows to the feature store.

A snapshot or feature row that does not decode, has another format version or another feature
schema is rejected: logged once with its key and offset, counted, and what was served stays.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition

from serving.metrics import Counter, Gauge, Histogram
from serving.feature_store import FeatureStore
from serving.registry import ModelRegistry
from udfs.envelope import EnvelopeError, decode
from udfs.feature_records import FeatureRecordError, decode_features

log = logging.getLogger(__name__)


class Follower(threading.Thread):
    def __init__(self, bootstrap_servers: str, snapshot_topic: str, features_topic: str,
                 registry: ModelRegistry, features: FeatureStore, schema_hash: str, freshness_buckets):
        super().__init__(name="topic-follower", daemon=True)
        self.bootstrap_servers = bootstrap_servers
        self.snapshot_topic, self.features_topic = snapshot_topic, features_topic
        self.registry, self.features, self.schema_hash = registry, features, schema_hash
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.applied = Counter("serving_snapshots_applied_total", "Snapshots now served.")
        self.stale = Counter("serving_snapshots_stale_total", "Snapshots not newer than the version served.")
        self.rejected = Counter("serving_snapshots_rejected_total", "Snapshots refused, by reason.", labels=("reason",))
        self.lag = Gauge("serving_consumer_lag", "Snapshot records not yet read, over all partitions.")
        self.models = Gauge("serving_models", "Keys with a served model.")
        self.feature_rows = Gauge("serving_feature_rows", "Keys with stored features.")
        self.rejected_features = Counter("serving_feature_rows_rejected_total", "Feature rows refused, by reason.",
                                         labels=("reason",))
        self.freshness = Histogram("serving_freshness_seconds",
                                   "From the end of a model's last window to it being servable here.", freshness_buckets)

    def metrics(self):
        return [self.applied, self.stale, self.rejected, self.lag, self.models, self.freshness,
                self.feature_rows, self.rejected_features]

    def run(self):
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                 isolation_level="read_committed", group_id=None)
        try:
            partitions = []
            for topic in (self.snapshot_topic, self.features_topic):
                found = sorted(consumer.partitions_for_topic(topic) or [])
                if not found:
                    raise RuntimeError(f"topic {topic!r} does not exist")
                partitions += [TopicPartition(topic, p) for p in found]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            # Ready once caught up with what was committed when the replica started.
            start_ends = consumer.end_offsets(partitions)
            next_lag_check = 0.0
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    handle = self.handle_snapshot if tp.topic == self.snapshot_topic else self.handle_features
                    for record in records:
                        handle(record)
                if time.monotonic() >= next_lag_check:
                    ends = consumer.end_offsets(partitions)
                    positions = {tp: consumer.position(tp) for tp in partitions}
                    self.lag.set(sum(max(0, ends[tp] - positions[tp]) for tp in partitions))
                    if not self.ready.is_set() and all(positions[tp] >= start_ends[tp] for tp in partitions):
                        self.ready.set()
                        log.info("caught up: %d models, %d feature rows", len(self.registry), len(self.features))
                    next_lag_check = time.monotonic() + 0.5
        finally:
            consumer.close()

    def handle_snapshot(self, record) -> None:
        where = f"partition {record.partition} offset {record.offset}"
        key = record.key.decode(errors="replace") if record.key else None
        try:
            snapshot = decode(record.value)
            if snapshot.feature_schema_hash != self.schema_hash:
                raise EnvelopeError(f"feature schema {snapshot.feature_schema_hash} is not the served {self.schema_hash}")
            current = self.registry.get(snapshot.key)
            if current is not None and current.snapshot.model_version >= snapshot.model_version:
                self.stale.inc()
                return
            model = snapshot.model()
        except EnvelopeError as e:
            reason = "schema" if "feature schema" in str(e) else "version" if "format version" in str(e) else "corrupt"
            self.rejected.inc(reason=reason)
            log.warning("rejected snapshot of key %r at %s: %s", key, where, e)
            return
        now = time.time()
        if self.registry.offer(snapshot, applied_at=now, model=model):
            self.applied.inc()
            self.models.set(len(self.registry))
            if self.ready.is_set():  # while catching up, the age of history is no measure of freshness
                self.freshness.observe(max(0.0, now - snapshot.window_end_ms / 1000))

    def handle_features(self, record) -> None:
        try:
            row = decode_features(record.value)
        except FeatureRecordError as e:
            self.rejected_features.inc(reason="corrupt")
            log.warning("rejected feature row at partition %d offset %d: %s", record.partition, record.offset, e)
            return
        if row.feature_schema_hash != self.schema_hash:
            self.rejected_features.inc(reason="schema")
            log.warning("rejected feature row of key %r at partition %d offset %d: feature schema %s is not %s",
                        row.key, record.partition, record.offset, row.feature_schema_hash, self.schema_hash)
            return
        if self.features.offer(row, received_at=time.time()):
            self.feature_rows.set(len(self.features))
