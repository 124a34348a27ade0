"""Kill TaskManagers mid-stream: the job recovers from its checkpoints and every key learns each of
its rows exactly once.

- At parallelism 1, two kills: every version on the snapshot topic (the default at-least-once lane:
  published before the checkpoint that covers it) carries one model, however often it was published.
- At parallelism 2 on two TaskManagers, on RocksDB with incremental checkpoints, five kills during
  200,000 events over 1,000 keys, with every sink exactly-once: one prediction per key and window,
  versions without gap or duplicate in the read_committed view, and each key's final metric that of
  plain River on its rows (a run without failures reproduces plain River to 1e-9: test_learner_job.py).
"""

import json
import re
import subprocess
import threading
import time

import pytest

from scripts import stack
from tests.integration.learner_rows import METRIC, MODEL, latest_by_key, plain_river, synthetic_events, synthetic_row

KEYS = [f"k{i}" for i in range(5)]
WINDOWS = 600
WINDOW_MS = 1000
CHECKPOINT_S = 3
# Each kill comes this long after a checkpoint completed, before the next one: the rows learned in
# between are learned again by the restored job, and the versions they made published again.
KILL_AFTER_CHECKPOINT_S = 1.5


def completed_checkpoints(job_id):
    return stack.rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]


def restores(job_id):
    return stack.rest(f"/jobs/{job_id}/checkpoints")["counts"]["restored"]


@pytest.mark.timeout(420)
def test_taskmanager_kills_lose_and_duplicate_nothing(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            # Long enough that no partition is ever taken for idle while the job catches up after a kill:
            # an idle partition lets the watermark run ahead and its late events would be dropped.
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": 1},
            # Count-based only (no max-wait timer), so that the versions published are known: 5, 10, ...
            "snapshots": {"policy": "every_n_updates", "every_n_updates": 5, "max_wait_seconds": 0},
            "flink": {"execution.checkpointing.interval": f"{CHECKPOINT_S} s"},
        },
    )
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)

    events = [
        {"entity": key, "x1": float(w % 7), "x2": float(i), "label": (w + i) % 3 == 0, "ts": w * WINDOW_MS + 1}
        for w in range(WINDOWS)
        for i, key in enumerate(KEYS)
    ]
    closer = {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": (WINDOWS + 100) * WINDOW_MS}

    def produce():  # 20 windows a second: input remains through both kills and their recoveries
        for i in range(0, len(events), 50):
            stack.produce_json(config["topics.events.name"], events[i : i + 50], "entity")
            time.sleep(0.5)
        # A far-future event in every partition closes the last windows of every key.
        stack.produce_to_every_partition(config["topics.events.name"], closer)

    producer = threading.Thread(target=produce)
    producer.start()

    try:
        for kill in range(2):
            checkpoints = completed_checkpoints(job_id)
            stack.wait_until(lambda: completed_checkpoints(job_id) >= checkpoints + 1, 90, "one more checkpoint")
            time.sleep(KILL_AFTER_CHECKPOINT_S)
            restored = restores(job_id)  # before the kill: the recovery may finish while flink.sh starts
            for pid in stack.taskmanager_daemon_pids():
                stack.kill_with_workers(pid)
            stack.script("flink.sh", "start")  # a new TaskManager, as a supervisor would start
            stack.wait_until(
                lambda: restores(job_id) > restored and stack.job_state(job_id) == "RUNNING",
                120,
                f"recovery after kill {kill + 1}",
            )
    finally:
        producer.join(timeout=120)
        stack.script("flink.sh", "start")

    latest = {}

    def all_learned():
        for snapshot in stack.read_snapshots(config, timeout_s=3):
            latest.setdefault(snapshot.key, []).append(snapshot)
        done = all(key in latest and latest[key][-1].n_learned == WINDOWS for key in KEYS)
        progress.update({key: latest[key][-1].n_learned for key in latest})
        if not done:
            latest.clear()
        return done

    progress = {}
    stack.wait_until(all_learned, 120, lambda: f"every key to learn its {WINDOWS} rows; n_learned now {progress}")
    restarts = stack.rest(f"/jobs/{job_id}")
    assert stack.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"], "the kills caused no failover"
    republished = 0
    for key in KEYS:
        # A version the failed job published after its last checkpoint is published again by the
        # restored job, which learns the same rows from the same state: it must be the same model.
        first = {}
        for snapshot in latest[key]:
            seen = first.setdefault(snapshot.model_version, snapshot)
            if seen is not snapshot:
                republished += 1
                assert (snapshot.n_learned, predictions_of(snapshot)) == (seen.n_learned, predictions_of(seen)), (
                    f"{key} version {snapshot.model_version}: published again with another model"
                )
        assert list(first) == list(range(5, WINDOWS + 1, 5)), f"{key}: {[s.model_version for s in latest[key]]}"
        assert [s.n_learned for s in first.values()] == list(first)
    # The snapshot lane does not wait for checkpoints: what was published after the one restored from
    # was on the topic before the kill, and is there twice now.
    assert republished > 0, "no version was published twice: were snapshots held back to checkpoints?"
    assert restarts["state"] == "RUNNING"


PROBES = [{"x1_avg": float(a), "x2_avg": float(b)} for a in range(-3, 4) for b in range(0, 5)]


def predictions_of(snapshot) -> list:
    """What a replica would answer with the snapshot's model, on fixed probe rows (pickles of equal
    models may differ in bytes: pickle memoizes equal strings by identity)."""
    model = snapshot.model()
    return [model.predict_proba_one(x) for x in PROBES]


def listening_pid(port: int) -> int | None:
    """The process listening on a loopback TCP port (ss names it; the tests run as the cluster's user)."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def job_taskmanager_pids(job_id) -> set[int]:
    """The TaskManager processes that run at least one of the job's subtasks (REST: each vertex's
    TaskManagers and their endpoints, host:port; the port's listener is the TaskManager)."""
    pids = set()
    for vertex in stack.rest(f"/jobs/{job_id}")["vertices"]:
        for tm in stack.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]:
            pid = listening_pid(int(tm["endpoint"].rsplit(":", 1)[1]))
            if pid is not None:
                pids.add(pid)
    return pids


KILL_KEYS = [f"user-{k:04d}" for k in range(1000)]
KILL_WINDOWS = 200  # one event per key and window: 200,000 events
KILLS = 5


def exactly_once_config(tmp_path, idle_timeout: str, flink: dict | None = None):
    """1 s windows, a snapshot every 5 rows, and every sink exactly-once, the snapshot lane too, so
    that the read_committed view holds each version once. No partition is taken for idle within
    `idle_timeout` while the job recovers and catches up (it would let the watermark run ahead)."""
    return stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": idle_timeout},
            "window": {"size_seconds": 1},
            "model": MODEL,
            "metric": METRIC,
            "snapshots": {"policy": "every_n_updates", "every_n_updates": 5, "max_wait_seconds": 0},
            "sinks": {"snapshot_delivery": "exactly-once"},
            "flink": flink or {},
        },
    )


@pytest.mark.timeout(900)
def test_five_taskmanager_kills_at_parallelism_two_lose_and_duplicate_nothing(
    services, taskmanagers, flink_job, tmp_path
):
    # RocksDB with incremental checkpoints (the other fault tests run on the default hashmap backend).
    config = exactly_once_config(
        tmp_path,
        "10 min",
        {
            "parallelism.default": 2,
            "execution.checkpointing.interval": "2 s",
            "state.backend.type": "rocksdb",
            "execution.checkpointing.incremental": True,
        },
    )
    topic = config["topics.events.name"]
    producing = threading.Event()
    producing.set()

    def produce():  # 2 windows (2,000 events) a second: input remains through every kill and recovery
        try:
            for w in range(KILL_WINDOWS):
                stack.produce_json(topic, synthetic_events(KILL_KEYS, [w]), "entity")
                time.sleep(0.5)
            stack.produce_to_every_partition(
                topic, {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": (KILL_WINDOWS + 100) * 1000}
            )
        finally:
            producing.clear()

    taskmanagers(2)
    producer = threading.Thread(target=produce)
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    producer.start()
    try:
        for kill in range(KILLS):
            checkpoints = completed_checkpoints(job_id)
            stack.wait_until(lambda: completed_checkpoints(job_id) >= checkpoints + 1, 90, "one more checkpoint")
            time.sleep(1)
            assert producing.is_set(), f"the input ran out before kill {kill + 1}"
            restored = restores(job_id)
            stack.kill_with_workers(min(job_taskmanager_pids(job_id)))
            taskmanagers(2)  # a new TaskManager, as a supervisor would start
            stack.wait_until(
                lambda: restores(job_id) > restored and stack.job_state(job_id) == "RUNNING",
                120,
                f"recovery after kill {kill + 1}",
            )
    finally:
        producer.join(timeout=300)
    check_each_row_once(config, KILL_KEYS, KILL_WINDOWS)
    assert restores(job_id) >= KILLS
    assert stack.job_state(job_id) == "RUNNING"


def check_each_row_once(config, keys, windows) -> None:
    """Key k's rows synthetic_row(k, 0..windows-1) were each learned once: one prediction per key and window
    (read_committed), versions 5, 10, ... once each with n_learned equal, plain River's final metric."""
    expected_rows = windows * len(keys)
    stack.wait_until(
        lambda: published_up_to(config, keys, windows // 5 * 5), 300, f"every key at version {windows // 5 * 5}"
    )
    # Committed with the same checkpoint as the snapshots, but by another sink: read until all are there.
    predictions = [
        json.loads(r.value) for r in stack.read_topic(config["topics.predictions.name"], expected_rows, timeout_s=120)
    ]
    per_window = {}
    for p in predictions:
        per_window[(p["model_key"], p["window_end_ms"])] = per_window.get((p["model_key"], p["window_end_ms"]), 0) + 1
    assert len(predictions) == expected_rows, f"{len(predictions)} predictions for {expected_rows} rows"
    assert set(per_window) == {(key, (w + 1) * 1000) for key in keys for w in range(windows)}
    assert set(per_window.values()) == {1}

    snapshots = stack.read_snapshots(config, expected=None, timeout_s=120)
    versions = {}
    for snapshot in snapshots:
        versions.setdefault(snapshot.key, []).append((snapshot.model_version, snapshot.n_learned))
    assert set(versions) == set(keys)
    latest = latest_by_key(snapshots)
    for k, key in enumerate(keys):
        assert versions[key] == [(v, v) for v in range(5, windows + 1, 5)], f"{key}: {versions[key][:8]}..."
        _, metric = plain_river([synthetic_row(k, w) for w in range(windows)])
        assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9), key


OUTAGE_KEYS = [f"book-{k:03d}" for k in range(100)]
PHASE_WINDOWS = 40  # produced before each outage and after the last
OUTAGES_S = (5, 60, 300)
CONVERGE_S = 30


@pytest.mark.restarts_stack
@pytest.mark.timeout(1500)
def test_broker_outages_of_5_s_60_s_and_5_min_lose_and_duplicate_nothing(services, flink_job, replicas, tmp_path):
    """The broker stops three times mid-stream; the job (restarting with its exponential backoff, no
    attempt limit) and a replica ride them out: after each, the replica serves every key's newest
    version within 30 s of the job having published it, and in the end each row was learned once."""
    config = exactly_once_config(tmp_path, "60 min")
    topic = config["topics.events.name"]
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    replica = replicas(config, 18401)
    replica.wait_ready()
    taskmanagers = stack.taskmanager_daemon_pids()

    def produce(first_window, windows):
        stack.produce_json(topic, synthetic_events(OUTAGE_KEYS, range(first_window, first_window + windows)), "entity")

    def served_versions():
        return {key: replica.http("GET", f"/models/{key}")[1].get("model_version") for key in OUTAGE_KEYS}

    produced = 0
    for outage_s in OUTAGES_S:
        produce(produced, PHASE_WINDOWS)
        produced += PHASE_WINDOWS
        time.sleep(1)  # mid-stream: the job is still learning the phase, its transactions open
        stack.script("kafka.sh", "stop")
        time.sleep(outage_s)
        stack.script("kafka.sh", "start")
        # The job may restore from a checkpoint taken after it had read the whole phase, and a restored
        # job has no watermark until events after that checkpoint arrive (README: Rescaling): an event
        # the checks dead-letter (no features, no label) whose ts moves the watermark past the phase
        # closes its last window. Every key then learns every window produced, once the job is back.
        stack.produce_to_every_partition(topic, {"entity": "watermark", "ts": produced * 1000})
        expected = produced
        stack.wait_until(
            lambda: stack.job_state(job_id) == "RUNNING" and published_up_to(config, OUTAGE_KEYS, expected),
            240,
            f"the job back after a {outage_s} s outage, every key at version {expected}",
        )
        stack.wait_until(
            lambda: set(served_versions().values()) == {expected},
            CONVERGE_S,
            lambda: (
                f"the replica to serve version {expected} within {CONVERGE_S} s: "
                f"{sorted(set(served_versions().values()))}, /healthz {replica.http('GET', '/healthz')}"
            ),
        )
    # Past 5 minutes without a broker, the sources' admin clients in the JobManager would re-bootstrap in a
    # busy loop (Kafka's default metadata recovery), a core and thousands of lines a second: sql/events.sql.
    rebootstraps = [line for line in stack.jobmanager_log_lines(config["source.group_id"]) if "Rebootstrapping" in line]
    assert not rebootstraps, f"{len(rebootstraps)} re-bootstraps in the JobManager's log, the first: {rebootstraps[0]}"
    produce(produced, PHASE_WINDOWS)
    produced += PHASE_WINDOWS
    stack.produce_to_every_partition(
        topic, {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": (produced + 100) * 1000}
    )
    check_each_row_once(config, OUTAGE_KEYS, produced)
    stack.wait_until(
        lambda: set(served_versions().values()) == {produced}, CONVERGE_S, "the replica to serve the last versions"
    )
    assert stack.job_state(job_id) == "RUNNING"
    assert stack.taskmanager_daemon_pids() == taskmanagers, "a TaskManager did not outlive the outages"
    assert stack.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"], "the outages caused no failover"


def published_up_to(config, keys, version) -> bool:
    """Whether every key's newest committed snapshot has this version."""
    latest = latest_by_key(stack.read_snapshots(config, expected=None, timeout_s=30))
    return all(key in latest and latest[key].model_version == version for key in keys)
