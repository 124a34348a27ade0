"""Start keys from their newest published model, for a learner that starts without their state.

A job started without a savepoint (a first deployment on an existing snapshot topic, lost checkpoints,
or an upgrade from a learner whose state layout Flink cannot restore, like the one-key-per-call
learner of earlier releases, uid `learner`) would otherwise start every key from scratch and number
its versions from 1 again, which serving ignores as older than what it holds. With
`learner.bootstrap: snapshots` the learner reads the compacted snapshot topic once when it opens
(read_committed, to its end) and a key it has no state for starts from the newest envelope of it:
its model, `n_learned`, `model_version` and `generation` (versions go on from there, in the same
lineage) and last window (the replay guard skips windows it learned). Its progressive metric and its
model-safety guards start over: the envelope carries the metric's value, not its state. Envelopes are
verified with `signing.keys` first, as serving does; unsigned or foreign ones are skipped and counted.

>>> from river import linear_model
>>> from udfs.envelope import Snapshot, dump_model, encode
>>> from udfs.signing import Keyring
>>> keyring = Keyring({"k1": b"s" * 32}, "k1")
>>> def envelope(version, generation, keyring=keyring):
...     return encode(Snapshot(key="k1", model_version=version, n_learned=version, metric_name="LogLoss",
...         metric_value=0.5, window_end_ms=9_000, watermark_ms=8_999, emitted_at_ms=9_100,
...         feature_schema_hash="f00d", payload=dump_model(linear_model.LogisticRegression()),
...         generation=generation), keyring)
>>> forged = envelope(2**62, 2**62, Keyring({"k1": b"x" * 32}, "k1"))
>>> records = [("k1", envelope(7, 2)), ("k1", envelope(90, 1)), ("k1", b"junk"), (None, envelope(8, 2)), ("k1", forged)]
>>> seed = newest_snapshots(records, "f00d", keyring)["k1"]
>>> (seed.generation, seed.model_version, seed.n_learned, seed.window_end_ms, type(seed.model()).__name__)
(2, 7, 7, 9000, 'LogisticRegression')
"""

from __future__ import annotations

import logging
import time

from udfs.envelope import EnvelopeError, EnvelopeSignatureError, Snapshot, decode
from udfs.signing import Keyring

log = logging.getLogger(__name__)

BOOTSTRAP_MODES = ("none", "snapshots")


def newest_snapshots(records, schema_hash: str, keyring: Keyring) -> dict[str, Snapshot]:
    """The newest envelope per key, by (generation, model_version), among (key, value) records that
    `keyring` verifies and of this feature schema; the others are skipped and logged."""
    newest: dict[str, Snapshot] = {}
    skipped = unsigned = 0
    for key, value in records:
        if value is None:  # a tombstone: the key expired or was deleted, and starts afresh
            newest.pop(key, None)
            continue
        try:
            snapshot = decode(value, keyring)
        except EnvelopeSignatureError:
            unsigned += 1
            continue
        except EnvelopeError:
            skipped += 1
            continue
        if key is None or snapshot.key != key or snapshot.feature_schema_hash != schema_hash:
            skipped += 1
            continue
        if key not in newest or snapshot.order > newest[key].order:
            newest[key] = snapshot
    if unsigned:
        log.warning("bootstrap: skipped %d snapshot record(s) whose signature does not verify", unsigned)
    if skipped:
        log.warning("bootstrap: skipped %d snapshot record(s) that do not decode or are of another schema", skipped)
    return newest


def read_snapshot_topic(bootstrap_servers: str, topic: str, timeout_s: float = 120):
    """Every committed (key, value) of a topic, from its earliest offset to its end at the time of call."""
    from kafka import KafkaConsumer, TopicPartition  # the job's workers need it only for a bootstrap

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"bootstrap: {topic} not read to its end within {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    yield (record.key.decode() if record.key is not None else None), record.value
    finally:
        consumer.close()
