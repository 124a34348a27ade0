"""The follower's handling of one snapshot record, without Kafka: what is served, refused or skipped."""

import json
import logging
import multiprocessing
import os
import pickle
import random
import signal
import time
import types

import pytest

from scripts import stack
from serving.feature_store import FeatureStore
from serving.follower import HANDLERS, Follower, Rejected, TopicReader, check_snapshot
from serving.registry import ModelRegistry
from tests.unit.models import KEYRING, snapshot, trained
from tests.unit.test_envelope import RunsCode
from udfs.envelope import FORMAT_VERSION, encode, feature_schema_hash
from udfs.signing import Keyring

FEATURES = ("x1", "x2")
SCHEMA = feature_schema_hash(FEATURES)


def record(value, key="k", offset=0):
    """What the follower reads of a Kafka record."""
    return types.SimpleNamespace(key=key.encode(), value=value, partition=1, offset=offset)


def follower(reader_process=False):
    return Follower(
        "127.0.0.1:1",
        "snapshots",
        "features",
        ModelRegistry(),
        FeatureStore(),
        SCHEMA,
        [1, 10],
        KEYRING,
        reader_process=reader_process,
    )


def test_check_snapshot_keeps_a_valid_snapshot_unpickled():
    checked = check_snapshot(encode(snapshot(version=4), KEYRING), SCHEMA, KEYRING)
    assert (checked.key, checked.model_version, checked.feature_schema_hash) == ("k", 4, SCHEMA)


@pytest.mark.parametrize(
    "value, reason",
    [
        (bytes(random.Random(1).getrandbits(8) for _ in range(200)), "corrupt"),
        (b"RTML", "corrupt"),
        (encode(snapshot(), KEYRING)[:30], "corrupt"),
        (None, "corrupt"),
        (encode(snapshot(format_version=FORMAT_VERSION + 1), KEYRING), "version"),
        (encode(snapshot(feature_schema_hash=feature_schema_hash(["x2", "x1"])), KEYRING), "schema"),
    ],
)
def test_check_snapshot_names_the_reason_it_rejects(value, reason):
    with pytest.raises(Rejected) as rejected:
        check_snapshot(value, SCHEMA, KEYRING)
    assert rejected.value.reason == reason


def test_a_rejected_snapshot_is_counted_logged_once_and_the_old_model_keeps_serving(caplog):
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=3), KEYRING), offset=10))
    served = f.registry.get("k")
    bad = [
        encode(snapshot(version=4, payload=b"not a pickle"), KEYRING),
        encode(snapshot(version=5, feature_schema_hash="0123456789abcdef"), KEYRING),
        encode(snapshot(version=6, format_version=FORMAT_VERSION + 1), KEYRING),
        b"\x00garbage",
    ]
    with caplog.at_level(logging.WARNING, logger="serving.follower"):
        for offset, value in enumerate(bad, start=11):
            f.handle_snapshot(record(value, offset=offset))
    assert f.registry.get("k") is served
    assert {reason: f.rejected.value(reason=reason) for reason in ("corrupt", "schema", "version")} == {
        "corrupt": 2,
        "schema": 1,
        "version": 1,
    }
    assert len(caplog.records) == len(bad)
    assert all(
        "'k'" in r.getMessage() and f"partition 1 offset {offset}" in r.getMessage()
        for offset, r in enumerate(caplog.records, start=11)
    )


def test_duplicates_and_older_versions_are_skipped_without_unpickling():
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=5), KEYRING)))
    # A payload that would not load proves the older ones are not unpickled.
    f.handle_snapshot(record(encode(snapshot(version=5, payload=b"x"), KEYRING)))
    f.handle_snapshot(record(encode(snapshot(version=2, payload=b"x"), KEYRING)))
    assert (f.registry.versions(), f.applied.value(), f.stale.value(), f.rejected.value(reason="corrupt")) == (
        {"k": 5},
        1,
        2,
        0,
    )


def test_freshness_is_measured_only_once_caught_up():
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=1), KEYRING)))
    assert f.freshness.count == 0
    f.ready.set()
    f.handle_snapshot(record(encode(snapshot(version=2), KEYRING)))
    assert f.freshness.count == 1


def rollback_extra(from_version=2, to_version=1, reason="v2 degraded"):
    return {"rollback": {"from_version": from_version, "to_version": to_version, "reason": reason}}


@pytest.mark.parametrize(
    "extra",
    [
        ["rollback"],
        {"rollback": "v1"},
        {"rollback": {"from_version": 2, "to_version": 1}},  # no reason
        rollback_extra(to_version="1"),
        rollback_extra(to_version=True),
        rollback_extra(to_version=3),  # not older than the record itself
        rollback_extra(from_version=None),
    ],
)
def test_check_snapshot_refuses_extra_it_cannot_apply(extra):
    with pytest.raises(Rejected) as rejected:
        check_snapshot(encode(snapshot(version=3, extra=extra), KEYRING), SCHEMA, KEYRING)
    assert rejected.value.reason == "corrupt"


def test_rollbacks_are_counted_by_where_their_model_came_from_and_logged(caplog):
    f = follower()
    for version in (1, 2):
        f.handle_snapshot(record(encode(snapshot(version=version), KEYRING)))
    good = trained(1)
    with caplog.at_level(logging.INFO, logger="serving.follower"):
        # Held: the payload is not even loaded. Not held (a key this replica never served): loaded.
        f.handle_snapshot(record(encode(snapshot(version=3, payload=b"x", extra=rollback_extra()), KEYRING)))
        f.handle_snapshot(
            record(
                encode(snapshot(key="new", version=9, model=good, extra=rollback_extra(8, 7, "v8 degraded")), KEYRING)
            )
        )
    assert (f.rollbacks.value(source="history"), f.rollbacks.value(source="payload")) == (1, 1)
    assert (f.applied.value(), f.rejected.value(reason="corrupt")) == (4, 0)
    assert f.registry.get("k").model is f.registry.held("k", 1).model
    assert [
        "'k' rolled back: v3 serves v1's model (from history) instead of v2: v2 degraded",
        "'new' rolled back: v9 serves v7's model (from payload) instead of v8: v8 degraded",
    ] == [r.getMessage().removeprefix("key ") for r in caplog.records]
    # A rollback record delivered again is stale like any other version.
    f.handle_snapshot(record(encode(snapshot(version=3, payload=b"x", extra=rollback_extra()), KEYRING)))
    assert (f.stale.value(), f.rollbacks.value(source="history")) == (1, 1)


def test_a_rollback_whose_payload_does_not_load_is_rejected_and_the_served_model_stays():
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=2), KEYRING)))
    served = f.registry.get("k")
    f.handle_snapshot(
        record(encode(snapshot(version=3, payload=b"x", extra=rollback_extra()), KEYRING))
    )  # v1 never held
    assert f.registry.get("k") is served
    assert (f.rejected.value(reason="corrupt"), f.rollbacks.value(source="payload")) == (1, 0)


def test_unsigned_foreign_and_altered_snapshots_are_refused_for_their_signature_and_a_huge_version_pins_nothing():
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=3), KEYRING)))
    served = f.registry.get("k")
    forger = Keyring({"test": b"a-guess-at-the-secret-32-bytes-long"}, "test")
    tampered = bytearray(encode(snapshot(version=2**62), KEYRING))
    tampered[-40] ^= 1  # a payload byte
    for value in (
        encode(snapshot(version=2**62, generation=2**62), forger),
        encode(snapshot(version=2**62), Keyring({"mine": b"m" * 32}, "mine")),
        bytes(tampered),
    ):
        f.handle_snapshot(record(value))
    assert f.rejected.value(reason="signature") == 3 and f.registry.get("k") is served
    f.handle_snapshot(record(encode(snapshot(version=4), KEYRING)))
    assert f.registry.versions() == {"k": 4}


def test_a_signed_payload_naming_a_forbidden_class_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=1), KEYRING)))
    f.handle_snapshot(record(encode(snapshot(version=2, payload=pickle.dumps(RunsCode(marker))), KEYRING)))
    assert (f.rejected.value(reason="forbidden"), f.registry.versions(), marker.exists()) == (1, {"k": 1}, False)


def test_a_new_generation_replaces_a_higher_version_and_rollbacks_stay_within_their_generation():
    f = follower()
    f.handle_snapshot(record(encode(snapshot(version=250, generation=1), KEYRING)))
    f.handle_snapshot(record(encode(snapshot(version=1, generation=2), KEYRING)))
    f.handle_snapshot(record(encode(snapshot(version=251, generation=1), KEYRING)))  # the old job, late
    assert f.registry.get("k").snapshot.order == (2, 1) and f.stale.value() == 1
    f.handle_snapshot(record(encode(snapshot(key="j", version=2, generation=1), KEYRING), key="j"))
    f.handle_snapshot(record(encode(snapshot(key="j", version=3, generation=2), KEYRING), key="j"))
    # A v2 of key j is held, but generation 1's: generation 2's rollback to its own v2 loads the record's payload.
    f.handle_snapshot(
        record(encode(snapshot(key="j", version=4, generation=2, extra=rollback_extra(3, 2)), KEYRING), key="j")
    )
    assert [s.snapshot.order for s in f.registry._held["j"]] == [(1, 2), (2, 3), (2, 4)]
    assert f.rollbacks.value(source="payload") == 1 and f.registry.get("j").rollback.source == "payload"


@pytest.mark.timeout(60)
def test_the_reader_process_stops_with_the_follower_and_a_dead_one_is_replaced_while_readiness_fails():
    f = follower(
        reader_process=True
    )  # its broker is never reachable: the reader process retries, as while a broker is away
    f.start()
    try:
        stack.wait_until(lambda: f.process is not None and f.process.is_alive(), 20, "the reader process")
        first = f.process
        f.ready.set()  # as once caught up
        os.kill(first.pid, signal.SIGKILL)
        stack.wait_until(lambda: not f.ready.is_set(), 20, "readiness to fail")
        stack.wait_until(lambda: f.process is not first and f.process.is_alive(), 20, "a new reader process")
        assert f.error is None  # a reader that died is replaced, not a failure for good
    finally:
        f.stop()
    assert not f.is_alive() and not f.process.is_alive()


def test_a_tombstone_drops_the_key_and_its_features_and_a_key_that_comes_back_serves_from_version_1():
    f = follower()
    for key in ("k", "j"):
        f.handle_snapshot(record(encode(snapshot(key=key, version=5), KEYRING), key=key))
        f.handle_features(
            record(
                json.dumps(
                    {
                        "key": key,
                        "window_end_ms": 1000,
                        "feature_schema_hash": SCHEMA,
                        "features": {"x1": 1.0, "x2": 2.0},
                    }
                ).encode(),
                key=key,
            )
        )
    assert (f.models.value(), f.feature_rows.value()) == (2, 2)
    f.handle_snapshot(record(None, key="k"))
    f.handle_features(record(None, key="k"))
    f.handle_snapshot(record(None, key="never-served"))  # nothing to drop: not counted, not rejected
    assert f.registry.get("k") is None and f.features.get("k") is None and f.registry.get("j") is not None
    assert (f.models.value(), f.feature_rows.value()) == (1, 1)
    assert (f.removed.value(topic="snapshots"), f.removed.value(topic="features")) == (1, 1)
    assert list(f.rejected.samples()) == []
    # The key's state started afresh in the job: version 1 is newer than nothing served.
    f.handle_snapshot(record(encode(snapshot(key="k", version=1), KEYRING), key="k"))
    assert f.registry.get("k").snapshot.model_version == 1


def test_the_reader_process_passes_a_tombstone_through_and_the_server_drops_the_key():
    """The child's half (TopicReader) and the server's (HANDLERS), as the pipe joins them."""
    f = follower()
    reader = TopicReader("127.0.0.1:1", "snapshots", "features", SCHEMA, KEYRING, None)

    def deliver(message):
        HANDLERS[message[0]](f, *message[1:])

    deliver(reader.snapshot(record(encode(snapshot(key="k", version=5), KEYRING), key="k")))
    deliver(
        reader.features(
            record(
                json.dumps(
                    {
                        "key": "k",
                        "window_end_ms": 1000,
                        "feature_schema_hash": SCHEMA,
                        "features": {"x1": 1.0, "x2": 2.0},
                    }
                ).encode(),
                key="k",
            )
        )
    )
    assert (f.models.value(), f.feature_rows.value()) == (1, 1)
    messages = [reader.snapshot(record(None, key="k")), reader.features(record(None, key="k"))]
    assert messages == [("removed", "snapshots", "k"), ("removed", "features", "k")]
    for message in messages:
        deliver(message)
    assert f.registry.get("k") is None and f.features.get("k") is None
    assert (f.models.value(), f.feature_rows.value()) == (0, 0)
    assert (f.removed.value(topic="snapshots"), f.removed.value(topic="features")) == (1, 1)
    # A null value without a key names no key to drop: still a corrupt record, as before tombstones.
    assert reader.snapshot(types.SimpleNamespace(key=None, value=None, partition=1, offset=3))[:2] == (
        "rejected",
        "corrupt",
    )


@pytest.mark.timeout(30)
def test_without_a_reader_process_the_follower_thread_reads_and_stops_when_asked():
    f = follower()  # its broker is never reachable: the thread retries, as while a broker is away
    f.start()
    try:
        stack.wait_until(lambda: f.is_alive(), 10, "the follower thread")
        time.sleep(0.5)  # long enough for a reader process to have been started
        assert f.process is None and not [p for p in multiprocessing.active_children() if p.name == "topic-reader"]
    finally:
        f.stop(timeout_s=0.1)  # kafka-python looks for an unreachable broker for 30 s before it gives up
    # A reader in the follower's thread reads nothing more once the follower stops, and ends at once.
    reader, sent = f._reader(), []
    started = time.monotonic()
    reader.run(types.SimpleNamespace(send=sent.append), f.stopping)
    assert time.monotonic() - started < 1 and sent == [] and not reader.parent_alive()
