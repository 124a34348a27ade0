"""Kill the TaskManager mid-stream, twice: the job recovers from its checkpoints, every key learns
each of its rows exactly once, and every version on the snapshot topic (at-least-once: published
before the checkpoint that covers it) carries one model, however often it was published."""

import os
import signal
import threading
import time

import pytest

from tests.integration import stack

KEYS = [f"k{i}" for i in range(5)]
WINDOWS = 600
WINDOW_MS = 1000
CHECKPOINT_S = 3
# Each kill comes this long after a checkpoint completed, before the next one: the rows learned in
# between are learned again by the restored job, and the versions they made published again.
KILL_AFTER_CHECKPOINT_S = 1.5


def taskmanager_pids():
    """The TaskManager and its Python workers, from the pid file scripts/flink.sh keeps."""
    run = os.path.join(stack.PROJECT_DIR, "run", "flink")
    pids = []
    for name in os.listdir(run):
        if name.endswith("-taskexecutor.pid"):
            for pid in open(os.path.join(run, name)).read().split():
                if stack.alive(int(pid)):
                    pids.append(int(pid))
    return pids + [child for pid in pids for child in stack.descendants(pid)]


def completed_checkpoints(job_id):
    return stack.rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]


def restores(job_id):
    return stack.rest(f"/jobs/{job_id}/checkpoints")["counts"]["restored"]


@pytest.mark.timeout(420)
def test_taskmanager_kills_lose_and_duplicate_nothing(services, flink_job, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {
        # Long enough that no partition is ever taken for idle while the job catches up after a kill:
        # an idle partition lets the watermark run ahead and its late events would be dropped.
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
        "window": {"size_seconds": 1},
        # Count-based only (no max-wait timer), so that the versions published are known: 5, 10, ...
        "snapshots": {"policy": "every_n_updates", "every_n_updates": 5, "max_wait_seconds": 0},
        "flink": {"execution.checkpointing.interval": f"{CHECKPOINT_S} s"},
    })
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)

    events = [{"entity": key, "x1": float(w % 7), "x2": float(i), "label": (w + i) % 3 == 0, "ts": w * WINDOW_MS + 1}
              for w in range(WINDOWS) for i, key in enumerate(KEYS)]
    closer = {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": (WINDOWS + 100) * WINDOW_MS}

    def produce():  # 20 windows a second: input remains through both kills and their recoveries
        for i in range(0, len(events), 50):
            stack.produce_json(config["topics.events.name"], events[i:i + 50], "entity")
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
            killed = taskmanager_pids()
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            stack.wait_until(lambda: not any(stack.alive(pid) for pid in killed), 10, "the killed processes to go")
            stack.script("flink.sh", "start")  # a new TaskManager, as a supervisor would start
            stack.wait_until(lambda: restores(job_id) > restored and stack.job_state(job_id) == "RUNNING",
                             120, f"recovery after kill {kill + 1}")
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
                assert (snapshot.n_learned, predictions_of(snapshot)) == (seen.n_learned, predictions_of(seen)), \
                    f"{key} version {snapshot.model_version}: published again with another model"
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
