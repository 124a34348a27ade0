"""Follows the snapshot topic: every partition from the earliest offset, read_committed, no consumer
group (every replica sees every snapshot), and hands each valid snapshot to the registry.

A snapshot that does not decode, has another format version or another feature schema is rejected:
logged once with its key and offset, counted, and the model already served stays.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition

from serving.metrics import Counter, Gauge, Histogram
from serving.registry import ModelRegistry
from udfs.envelope import EnvelopeError, decode

log = logging.getLogger(__name__)


class SnapshotFollower(threading.Thread):
    def __init__(self, bootstrap_servers: str, topic: str, registry: ModelRegistry, schema_hash: str,
                 freshness_buckets):
        super().__init__(name="snapshot-follower", daemon=True)
        self.bootstrap_servers, self.topic = bootstrap_servers, topic
        self.registry, self.schema_hash = registry, schema_hash
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.applied = Counter("serving_snapshots_applied_total", "Snapshots now served.")
        self.stale = Counter("serving_snapshots_stale_total", "Snapshots not newer than the version served.")
        self.rejected = Counter("serving_snapshots_rejected_total", "Snapshots refused, by reason.", labels=("reason",))
        self.lag = Gauge("serving_consumer_lag", "Snapshot records not yet read, over all partitions.")
        self.models = Gauge("serving_models", "Keys with a served model.")
        self.freshness = Histogram("serving_freshness_seconds",
                                   "From the end of a model's last window to it being servable here.", freshness_buckets)

    def metrics(self):
        return [self.applied, self.stale, self.rejected, self.lag, self.models, self.freshness]

    def run(self):
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                 isolation_level="read_committed", group_id=None)
        try:
            partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            if not partitions:
                raise RuntimeError(f"snapshot topic {self.topic!r} does not exist")
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            # Ready once caught up with what was committed when the replica started.
            start_ends = consumer.end_offsets(partitions)
            next_lag_check = 0.0
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for record in records:
                        self.handle(record)
                if time.monotonic() >= next_lag_check:
                    ends = consumer.end_offsets(partitions)
                    positions = {tp: consumer.position(tp) for tp in partitions}
                    self.lag.set(sum(max(0, ends[tp] - positions[tp]) for tp in partitions))
                    if not self.ready.is_set() and all(positions[tp] >= start_ends[tp] for tp in partitions):
                        self.ready.set()
                        log.info("caught up with %s: %d models", self.topic, len(self.registry))
                    next_lag_check = time.monotonic() + 0.5
        finally:
            consumer.close()

    def handle(self, record) -> None:
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
