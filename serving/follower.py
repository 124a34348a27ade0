"""Follows the snapshot and features topics: every partition (or the subset `serving.partitions`
names, the same numbers of both topics) from the earliest offset, read_committed, no consumer group
(every replica sees every record of what it follows); valid snapshots go to the model registry, feature
rows to the feature store.

The Kafka consumer, signature verification and the checks (`TopicReader`) run in the `Follower`
thread itself by default or, with `serving.reader_process: true`, in a child process started with the
spawn method, where their CPU does not hold the GIL the server's event loop answers requests with.
The child sends what it read, one batch per poll, over a private pipe: verified snapshots (payload
still pickled), feature rows, rejections and its progress. In the serving process only the stale
check, the restricted unpickle of a newer model and the registry's one-slot swap remain. A child that
dies is seen at once (its end of the pipe closes): the replica turns not ready (`/readyz` 503) and
starts a new child, which reads the topics from the start again (versions already served are skipped)
and makes it ready once caught up.

Which is quicker depends on the CPU the replica gets: the child takes the reading off the serving
process's GIL, but costs more CPU in all (each record is pickled across the pipe and unpickled again,
and the server's process still unpickles the models, the largest part), which a replica on cores that
are busy with other work pays for in latency (README, Serving replicas, measured both ways).

Every snapshot's signature is verified before anything else is done with it (udfs/signing.py): one
that is unsigned, signed with a key not in `signing.keys` or altered is rejected with reason
`signature`, so a forged huge version or generation never reaches the registry. A signed payload that
names a class outside the allow-list (udfs/safe_pickle.py) is rejected with reason `forbidden`. A
snapshot or feature row that does not decode, has another format version or another feature
schema is rejected: logged once with its key and offset, counted, and what was served stays. While
the broker or a topic is away, the follower retries and the models it has keep serving. Rollback
records are logged and counted by where their model came from (the registry's history or the payload).
A tombstone (a null value: the job expired or deleted the key) drops the key's model or features.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from typing import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from serving.feature_store import FeatureStore
from serving.metrics import Counter, Gauge, Histogram
from serving.partitions import SETTING as PARTITIONS_SETTING, KeyPartitions
from serving.registry import ModelRegistry
from udfs.envelope import (
    EXTRA_ROLLBACK,
    FORMAT_VERSION,
    MAGIC,
    EnvelopeError,
    EnvelopeSignatureError,
    ForbiddenPayload,
    Snapshot,
    decode,
)
from udfs.feature_records import FeatureRecordError, decode_features
from udfs.signing import Keyring

log = logging.getLogger(__name__)

RETRY_S = 2.0
# How long a stopping replica waits for its reader process before killing it.
STOP_TIMEOUT_S = 5.0
RECONNECT_BACKOFF_MAX_MS = 1000
LAG_LOOKUP_TIMEOUT_MS = 1000


class TopicMissing(LookupError):
    """A followed topic that does not exist (yet)."""


class PartitioningError(ValueError):
    """Topics a replica cannot follow a subset of: partitions that do not exist, or topics not
    partitioned alike. Not retried: /healthz reports it until the config is fixed."""


def partitions_to_follow(counts: dict[str, int], held: frozenset[int] | None) -> dict[str, list[int]]:
    """The partitions to follow of each topic, given each topic's partition count.

    >>> partitions_to_follow({"snapshots": 4, "features": 4}, frozenset({1, 3}))
    {'snapshots': [1, 3], 'features': [1, 3]}
    >>> partitions_to_follow({"snapshots": 4, "features": 2}, frozenset({1}))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    serving.follower.PartitioningError: serving.partitions needs topics partitioned alike,
    so that a key's model and features are on the same partition number: snapshots has 4 partitions,
    features 2 (give both the same 'partitions' under topics:)
    """
    if held is None:
        return {topic: list(range(count)) for topic, count in counts.items()}
    if len(set(counts.values())) > 1:
        (first, first_count), *others = counts.items()
        found = ", ".join([f"{first} has {first_count} partitions", *(f"{t} {c}" for t, c in others)])
        raise PartitioningError(
            f"{PARTITIONS_SETTING} needs topics partitioned alike, so that a key's model and "
            f"features are on the same partition number: {found} (give both the same "
            f"'partitions' under topics:)"
        )
    count = next(iter(counts.values()))
    missing = sorted(p for p in held if p >= count)
    if missing:
        raise PartitioningError(
            f"{PARTITIONS_SETTING}: partition(s) {', '.join(map(str, missing))} do not exist; "
            f"the topics have {count} partitions, 0 to {count - 1}"
        )
    return {topic: sorted(held) for topic in counts}


class Rejected(ValueError):
    """A snapshot this replica will not serve; `reason` is its label in the rejected-snapshots metric."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_snapshot(value: bytes, schema_hash: str, keyring: Keyring) -> Snapshot:
    """The snapshot in a record's value, if its signature verifies and this replica can serve it;
    raises Rejected otherwise.

    The model stays unpickled: most records on a busy topic are older than what is served."""
    try:
        snapshot = decode(value, keyring)
    except EnvelopeSignatureError as e:
        raise Rejected("signature", str(e)) from None
    except EnvelopeError as e:
        # A newer writer's envelope is not corruption; telling them apart shows an upgrade out of order.
        head = bytes(value or b"")[: len(MAGIC) + 1]
        newer = head[:-1] == MAGIC and len(head) > len(MAGIC) and head[-1] > FORMAT_VERSION
        raise Rejected("version" if newer else "corrupt", str(e)) from None
    if snapshot.feature_schema_hash != schema_hash:
        raise Rejected("schema", f"feature schema {snapshot.feature_schema_hash} is not the served {schema_hash}")
    if not isinstance(snapshot.extra, dict):
        raise Rejected("corrupt", f"extra must be an object, got {type(snapshot.extra).__name__}")
    rollback = snapshot.extra.get(EXTRA_ROLLBACK)
    if rollback is not None and not is_rollback(rollback, snapshot.model_version):
        raise Rejected(
            "corrupt",
            f"extra.rollback must be {{from_version, to_version, reason}} with versions "
            f"older than v{snapshot.model_version}, got {rollback!r}",
        )
    return snapshot


def is_rollback(rollback, version: int) -> bool:
    """Whether `extra["rollback"]` of a snapshot of `version` says what the registry needs to apply it."""
    if not isinstance(rollback, dict) or "reason" not in rollback:
        return False
    versions = [rollback.get("from_version"), rollback.get("to_version")]
    return all(isinstance(v, int) and not isinstance(v, bool) and v < version for v in versions)


class Follower(threading.Thread):
    """In the serving process: runs the topic reader here or starts its process (`reader_process`),
    applies what it sends (stale check, restricted unpickle, swap) and keeps every metric.
    `handle_snapshot`/`handle_features` check and apply one record, as the reader and the applying
    halves do together."""

    def __init__(
        self,
        bootstrap_servers: str,
        snapshot_topic: str,
        features_topic: str,
        registry: ModelRegistry,
        features: FeatureStore,
        schema_hash: str,
        freshness_buckets,
        keyring: Keyring,
        partitions: KeyPartitions | None = None,
        reader_process: bool = False,
    ):
        """`partitions`: the partitions to follow (None: every one); its count is set once known.
        `reader_process`: read the topics in a child process rather than in this thread."""
        super().__init__(name="topic-follower", daemon=True)
        self.bootstrap_servers = bootstrap_servers
        self.snapshot_topic, self.features_topic = snapshot_topic, features_topic
        self.registry, self.features, self.schema_hash = registry, features, schema_hash
        self.keyring = keyring
        self.partitions = partitions or KeyPartitions(None, snapshot_topic)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: str | None = None
        self.reader_process = reader_process
        self.process: multiprocessing.process.BaseProcess | None = None
        self.applied = Counter("serving_snapshots_applied_total", "Snapshots now served.")
        self.stale = Counter("serving_snapshots_stale_total", "Snapshots not newer than the version served.")
        self.rejected = Counter("serving_snapshots_rejected_total", "Snapshots refused, by reason.", labels=("reason",))
        self.rollbacks = Counter(
            "serving_rollbacks_total", "Rollback records applied, by where their model came from.", labels=("source",)
        )
        self.lag = Gauge("serving_consumer_lag", "Records not yet read, over the followed partitions of both topics.")
        self.followed = Gauge(
            "serving_partitions_followed",
            "Partitions of the snapshot topic followed here (all unless serving.partitions).",
        )
        self.models = Gauge("serving_models", "Keys with a served model.")
        self.feature_rows = Gauge("serving_feature_rows", "Keys with stored features.")
        self.removed = Counter(
            "serving_keys_removed_total",
            "Tombstones that dropped a served model or stored features, by topic.",
            labels=("topic",),
        )
        self.rejected_features = Counter(
            "serving_feature_rows_rejected_total", "Feature rows refused, by reason.", labels=("reason",)
        )
        self.freshness = Histogram(
            "serving_freshness_seconds",
            "From the end of a model's last window to it being servable here.",
            freshness_buckets,
        )

    def metrics(self):
        return [
            self.applied,
            self.stale,
            self.rejected,
            self.rollbacks,
            self.lag,
            self.followed,
            self.models,
            self.freshness,
            self.feature_rows,
            self.rejected_features,
            self.removed,
        ]

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop following: a reader process ends with this thread (it also ends by itself when this
        process dies without stopping it: it watches its parent)."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout_s)

    def _reader(self) -> TopicReader:
        return TopicReader(
            self.bootstrap_servers,
            self.snapshot_topic,
            self.features_topic,
            self.schema_hash,
            self.keyring,
            self.partitions.held,
        )

    def run(self):
        if not self.reader_process:
            # The reader's batches are applied as they are read, in this thread: no pipe, no process.
            return self._reader().run(_ApplyHere(self), self.stopping)
        context = multiprocessing.get_context("spawn")
        while not self.stopping.is_set():
            receiving, sending = context.Pipe(duplex=False)
            self.process = context.Process(target=self._reader().run, args=(sending,), name="topic-reader", daemon=True)
            self.process.start()
            sending.close()  # only the child writes: its death then closes the pipe (EOFError below)
            try:
                self.receive(receiving)
            finally:
                receiving.close()
                stop_process(self.process)
            if self.error or self.stopping.is_set():
                return
            # The reader died (killed, out of memory): not ready until a new one has caught up again.
            self.ready.clear()
            log.error(
                "the topic reader process exited with %s; starting a new one in %gs", self.process.exitcode, RETRY_S
            )
            self.stopping.wait(RETRY_S)

    def receive(self, receiving) -> None:
        """Apply the reader's batches until it ends, reports an error, or the replica stops."""
        while not self.stopping.is_set():
            try:
                if not receiving.poll(0.2):
                    continue
                # Unpickled with plain pickle: these bytes come only from this process's own child over a
                # private pipe, never from Kafka; the child verified every snapshot's signature first, and
                # the model payloads inside stay pickled until the registry's restricted unpickler loads them.
                batch = receiving.recv()
            except (EOFError, OSError):
                return
            self.apply(batch)
            if self.error:
                return

    def apply(self, batch: list) -> None:
        """Apply one batch of the reader's messages."""
        for message in batch:
            HANDLERS[message[0]](self, *message[1:])

    # What the reader process sends, by the message's first item.
    def _snapshot(self, snapshot: Snapshot, key: str | None, partition: int, offset: int) -> None:
        self.apply_snapshot(snapshot, key, partition, offset)

    def _rejected(self, reason: str, key: str | None, partition: int, offset: int, message: str) -> None:
        self.count_rejected(reason, key, partition, offset, message)

    def _features(self, row) -> None:
        self.apply_features(row)

    def _features_rejected(self, reason: str, message: str) -> None:
        self.rejected_features.inc(reason=reason)
        log.warning("%s", message)

    def _advance(self) -> None:
        self.features.advance()  # the rows of a new window just read are all in place

    def _partitions(self, count: int, followed: int) -> None:
        # Where a key lives is its partition among all of the topic's, followed or not.
        self.partitions.count = count
        self.followed.set(followed)

    def _ready(self) -> None:
        self.ready.set()
        log.info("caught up: %d models, %d feature rows", len(self.registry), len(self.features))

    def _lag(self, lag: int) -> None:
        self.lag.set(lag)

    def _error(self, error: str) -> None:
        self.error = error  # a replica that stopped following serves ever older models; /healthz reports it

    def _removed(self, topic: str, key: str) -> None:
        """A tombstone: drop the key's model (`snapshots`) or features (`features`); counted if it had any."""
        store, gauge = (self.registry, self.models) if topic == "snapshots" else (self.features, self.feature_rows)
        if store.remove(key):
            self.removed.inc(topic=topic)
            gauge.set(len(store))

    def handle_snapshot(self, record) -> None:
        """Check and apply one snapshot record in this process."""
        key = record.key.decode(errors="replace") if record.key else None
        if key is not None and record.value is None:
            return self._removed("snapshots", key)
        try:
            snapshot = check_snapshot(record.value, self.schema_hash, self.keyring)
        except Rejected as e:
            return self.count_rejected(e.reason, key, record.partition, record.offset, str(e))
        self.apply_snapshot(snapshot, key, record.partition, record.offset)

    def apply_snapshot(self, snapshot: Snapshot, key: str | None, partition: int, offset: int) -> None:
        """Serve a verified, checked snapshot if it is newer than the key's."""
        current = self.registry.get(snapshot.key)
        if current is not None and current.snapshot.order >= snapshot.order:
            self.stale.inc()
            return
        now = time.time()
        try:
            served = self.registry.offer(snapshot, applied_at=now)
        except ForbiddenPayload as e:
            return self.count_rejected("forbidden", key, partition, offset, str(e))
        except EnvelopeError as e:
            return self.count_rejected("corrupt", key, partition, offset, str(e))
        if served is None:
            return
        self.applied.inc()
        self.models.set(len(self.registry))
        if self.ready.is_set():  # while catching up, the age of history is no measure of freshness
            self.freshness.observe(max(0.0, now - snapshot.window_end_ms / 1000))
        if EXTRA_ROLLBACK in snapshot.extra:
            rollback = served.rollback
            self.rollbacks.inc(source=rollback.source)
            log.info(
                "key %r rolled back: v%d serves v%d's model (from %s) instead of v%d: %s",
                snapshot.key,
                rollback.version,
                rollback.to_version,
                rollback.source,
                rollback.from_version,
                rollback.reason,
            )

    def count_rejected(self, reason: str, key: str | None, partition: int, offset: int, error: str) -> None:
        self.rejected.inc(reason=reason)
        log.warning("rejected snapshot of key %r at partition %d offset %d: %s", key, partition, offset, error)

    def handle_features(self, record) -> None:
        """Check and apply one feature record in this process."""
        if record.key and record.value is None:
            return self._removed("features", record.key.decode(errors="replace"))
        checked = check_features(record, self.schema_hash)
        if isinstance(checked, tuple):
            return self._features_rejected(*checked)
        self.apply_features(checked)

    def apply_features(self, row) -> None:
        if self.features.offer(row, received_at=time.time()):
            self.feature_rows.set(len(self.features))


HANDLERS: dict[str, Callable] = {
    "snapshot": Follower._snapshot,
    "rejected": Follower._rejected,
    "features": Follower._features,
    "features_rejected": Follower._features_rejected,
    "advance": Follower._advance,
    "partitions": Follower._partitions,
    "ready": Follower._ready,
    "lag": Follower._lag,
    "error": Follower._error,
    "removed": Follower._removed,
}


class _ApplyHere:
    """What a reader in the follower's own thread sends its batches to: the follower, directly."""

    def __init__(self, follower: Follower):
        self.send = follower.apply


def check_features(record, schema_hash: str):
    """The feature row in a record, or (reason, log message) when it is refused."""
    try:
        row = decode_features(record.value)
    except FeatureRecordError as e:
        return "corrupt", f"rejected feature row at partition {record.partition} offset {record.offset}: {e}"
    if row.feature_schema_hash != schema_hash:
        return "schema", (
            f"rejected feature row of key {row.key!r} at partition {record.partition} offset "
            f"{record.offset}: feature schema {row.feature_schema_hash} is not {schema_hash}"
        )
    return row


def stop_process(process) -> None:
    """End a reader process that is still running: SIGTERM, then SIGKILL if it does not go."""
    if process.is_alive():
        process.terminate()
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


class TopicReader:
    """In the follower thread or a child process: reads both topics, verifies and checks every record, and
    sends the results to the follower, one list of messages per poll (see `Follower`'s handlers for what
    each says)."""

    def __init__(
        self,
        bootstrap_servers: str,
        snapshot_topic: str,
        features_topic: str,
        schema_hash: str,
        keyring: Keyring,
        held: frozenset[int] | None,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.snapshot_topic, self.features_topic = snapshot_topic, features_topic
        self.schema_hash, self.keyring, self.held = schema_hash, keyring, held

    def run(self, sending, stopping: threading.Event | None = None) -> None:
        """Follow until `stopping` is set (in the follower's thread) or, without it (in a child process),
        until the parent process is gone."""
        if stopping is None:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.parent, self.stopping = os.getppid(), stopping or threading.Event()
        self.in_child = stopping is None
        self.sending = sending
        while self.parent_alive():
            try:
                return self.follow()
            except (KafkaError, TopicMissing) as e:
                # A broker that restarts or topics not created yet: the replica keeps serving what it serves.
                # Reading again from the start is harmless: versions already served are skipped.
                log.warning("cannot follow the topics, retrying in %gs: %s", RETRY_S, e)
                self.stopping.wait(RETRY_S)
            except (BrokenPipeError, EOFError):
                return  # the serving process is gone or stopping
            except Exception as e:
                log.exception("stopped following the topics")
                self.sending.send([("error", f"{type(e).__name__}: {e}")])
                return

    def parent_alive(self) -> bool:
        """Whether to go on reading: not stopping, and in a child process, its parent still there."""
        # A replica killed outright (SIGKILL, SIGTERM without cleanup) cannot stop its child: the child,
        # re-parented, sees it and ends rather than reading Kafka for no one.
        return not self.stopping.is_set() and (not self.in_child or os.getppid() == self.parent)

    def follow(self):
        # Offsets out of range (records deleted while behind) restart from the earliest: skipping to the
        # latest would miss the newest version of every key not written since.
        # After a broker outage, reconnect within a second of its return (kafka-python's backoff otherwise
        # grows to 30 s between attempts, and the replica would serve old models that long).
        settings = dict(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
            group_id=None,
            auto_offset_reset="earliest",
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
        consumer = KafkaConsumer(**settings)
        lookups = None
        try:
            # The lag's end offsets are looked up on a connection of their own: a broker answers a
            # connection's requests in order, so on the fetching one each lookup waited for the fetch the
            # broker was holding (up to fetch_max_wait_ms, 500 ms), and the snapshots that came meanwhile
            # waited with it (README, Performance: freshness).
            lookups = KafkaConsumer(**settings)
            counts = {}
            for topic in (self.snapshot_topic, self.features_topic):
                found = consumer.partitions_for_topic(topic) or set()
                if not found:
                    raise TopicMissing(f"topic {topic!r} does not exist")
                counts[topic] = len(found)
            followed = partitions_to_follow(counts, self.held)
            partitions = [TopicPartition(topic, p) for topic, numbers in followed.items() for p in numbers]
            self.sending.send([("partitions", counts[self.snapshot_topic], len(followed[self.snapshot_topic]))])
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            # Ready once caught up with what was committed when the replica started.
            start_ends = consumer.end_offsets(partitions)
            ready, next_lag_check = False, 0.0
            while self.parent_alive():
                batch = []
                for tp, records in consumer.poll(timeout_ms=200).items():
                    handle = self.snapshot if tp.topic == self.snapshot_topic else self.features
                    for record in records:
                        batch.append(handle(record))
                if batch:
                    batch.append(("advance",))
                if time.monotonic() >= next_lag_check:
                    next_lag_check = time.monotonic() + 0.5
                    positions = {tp: consumer.position(tp) for tp in partitions}
                    if not ready and all(positions[tp] >= start_ends[tp] for tp in partitions):
                        ready = True
                        batch.append(("ready",))
                    try:
                        # Bounded: while the broker is away, a lag lookup must not hold up the polling.
                        ends = lookups.end_offsets(partitions, timeout_ms=LAG_LOOKUP_TIMEOUT_MS)
                        batch.append(("lag", sum(max(0, ends[tp] - positions[tp]) for tp in partitions)))
                    except KafkaError as e:
                        # The broker being away is no reason to stop serving; poll() reconnects.
                        log.warning("consumer lag unknown: %s", e)
                if batch:
                    self.sending.send(batch)
        finally:
            consumer.close()
            if lookups is not None:
                lookups.close()

    def snapshot(self, record) -> tuple:
        key = record.key.decode(errors="replace") if record.key else None
        if key is not None and record.value is None:
            return "removed", "snapshots", key  # a tombstone: the serving process drops the key's model
        try:
            return (
                "snapshot",
                check_snapshot(record.value, self.schema_hash, self.keyring),
                key,
                record.partition,
                record.offset,
            )
        except Rejected as e:
            return "rejected", e.reason, key, record.partition, record.offset, str(e)

    def features(self, record) -> tuple:
        if record.key and record.value is None:
            return "removed", "features", record.key.decode(errors="replace")
        checked = check_features(record, self.schema_hash)
        return ("features_rejected", *checked) if isinstance(checked, tuple) else ("features", checked)
