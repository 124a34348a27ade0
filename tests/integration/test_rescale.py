"""Rescale the learner through savepoints, parallelism 1 -> 2 -> 4 -> 1, on two TaskManagers with
events flowing (scripts/rescale.sh), on RocksDB with incremental checkpoints (the fault tests run on
the default hashmap backend): every key's model, n_learned and version sequence carry over, with no
gap and no reset, one prediction per key and window, and each key ends with plain River's metric on
its rows, which is what a run that never rescaled gives (test_learner_job.py)."""

import json
import threading
import time

import pytest

from scripts import stack
from tests.integration.learner_rows import METRIC, MODEL, latest_by_key, plain_river, synthetic_events, synthetic_row

KEYS = [f"item-{k:03d}" for k in range(200)]
WINDOWS = 120
# (windows every key must have learned, at the parallelism before, then the parallelism to rescale to):
# each job must learn on its own before the next rescale, while events keep coming.
RESCALES = [(15, 2), (40, 4), (65, 1)]


def learner_parallelism(job_id) -> int:
    return next(v["parallelism"] for v in stack.rest(f"/jobs/{job_id}")["vertices"] if v["name"] == "learner")


def completed_checkpoints(job_id) -> int:
    return stack.rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]


def learned_windows(config) -> int:
    """The fewest windows any key has learned, from the snapshot topic (one version per window)."""
    latest = latest_by_key(stack.read_snapshots(config, expected=None, timeout_s=30))
    return min((latest[key].n_learned if key in latest else 0) for key in KEYS)


@pytest.mark.timeout(900)
def test_rescaling_1_2_4_1_keeps_every_model_and_version(services, taskmanagers, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            # The default idle timeout: at parallelism 4, two of the source's subtasks read no partition.
            "source": {"watermark_delay_seconds": 0},
            "window": {"size_seconds": 1},
            "model": MODEL,
            "metric": METRIC,
            "snapshots": {"policy": "every_window"},
            "flink": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": True},
        },
    )
    taskmanagers(2)
    topic = config["topics.events.name"]

    def produce():  # 2 windows (400 events) a second: events keep coming through the rescales
        for w in range(WINDOWS):
            stack.produce_json(topic, synthetic_events(KEYS, [w]), "entity")
            time.sleep(0.5)

    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    jobs = [job_id]
    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert learner_parallelism(job_id) == 1
        stack.wait_until(lambda: completed_checkpoints(job_id) >= 2, 60, "two checkpoints")
        assert "RocksDB" in stack.rest(f"/jobs/{job_id}/checkpoints/config")["state_backend"]
        for windows, parallelism in RESCALES:
            stack.wait_until(
                lambda: learned_windows(config) >= windows,
                180,
                lambda: (
                    f"every key to learn {windows} windows at parallelism {learner_parallelism(job_id)}"
                    f" (the fewest: {learned_windows(config)})"
                ),
            )
            out = stack.script("rescale.sh", job_id, str(parallelism), "jobs/learner_job.py", "--config", config.source)
            job_id = out.strip().splitlines()[-1]
            jobs.append(job_id)
            stack.wait_for_job_state(job_id, "RUNNING", timeout_s=90)
            assert learner_parallelism(job_id) == parallelism
        producer.join(timeout=120)
        # After the last rescale: a job restored from a savepoint starts without a watermark, so the
        # windows open at the savepoint close with the events that come after it.
        stack.produce_to_every_partition(
            topic, {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": (WINDOWS + 100) * 1000}
        )
        stack.wait_until(
            lambda: learned_windows(config) >= WINDOWS,
            240,
            lambda: f"every key to learn {WINDOWS} windows (the fewest: {learned_windows(config)})",
        )
        # Predictions are exactly-once, committed with the checkpoint after their window; snapshots go
        # out at once (the at-least-once lane). So read them while the job runs: a job cancelled before
        # that checkpoint never commits its last windows' predictions (a restore would send them again).
        predictions = [
            json.loads(r.value)
            for r in stack.read_topic(config["topics.predictions.name"], WINDOWS * len(KEYS), timeout_s=60)
        ]
    finally:
        producer.join(timeout=120)
        for job in jobs[1:]:
            stack.cancel(job)

    snapshots = stack.read_snapshots(config, expected=None, timeout_s=60)
    versions = {}
    for snapshot in snapshots:
        versions.setdefault(snapshot.key, []).append((snapshot.model_version, snapshot.n_learned))
    latest = latest_by_key(snapshots)
    for k, key in enumerate(KEYS):
        assert versions[key] == [(v, v) for v in range(1, WINDOWS + 1)], (
            f"{key}: {versions[key][:5]}...{versions[key][-5:]}"
        )
        _, metric = plain_river([synthetic_row(k, w) for w in range(WINDOWS)])
        assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9), key
    assert sorted((p["model_key"], p["window_end_ms"]) for p in predictions) == sorted(
        (key, (w + 1) * 1000) for key in KEYS for w in range(WINDOWS)
    )
