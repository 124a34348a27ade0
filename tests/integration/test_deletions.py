"""A key deleted on request, across a TaskManager kill, on the real stack (issue #18, item 3).

Twenty keys learn ten windows while a replica follows. Right after a checkpoint, a request to delete
one key goes to the deletions topic; as soon as the learner has done it (its snapshot tombstone, on
the at-least-once lane, is on the topic) and before the next checkpoint commits it, the TaskManager is
killed. The restored job reads the request again and does it again: the key's state is gone (its
later rows make a new model, from version 1), the last record for it on the snapshot and features
topics is a tombstone (the features one committed by the restored job), the replica answers 404 and
counts it removed, and the other keys learn on untouched.
"""

import pytest

from scripts import stack
from tests.integration.learner_rows import WINDOW_MS, per_window_settings, synthetic_row
from tests.integration.test_fault_tolerance import completed_checkpoints, restores

KEYS = [f"user-{i:02d}" for i in range(20)]
DELETED = KEYS[3]
CHECKPOINT_S = 10


def events(windows) -> list:
    out = []
    for w in windows:
        for k, key in enumerate(KEYS):
            x, y = synthetic_row(k, w)
            out.append({"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1})
    return out


def records_for(topic: str, key: str, timeout_s: float = 3) -> list:
    """The values of `key`'s committed records on `topic`, in order (None for a tombstone)."""
    return [r.value for r in stack.read_topic(topic, None, timeout_s) if r.key and r.key.decode() == key]


def n_learned(replica, key):
    status, body = replica.http("GET", f"/models/{key}")
    return body.get("n_learned") if status == 200 else None


@pytest.mark.timeout(300)
def test_a_deletion_interrupted_by_a_taskmanager_kill_is_done_again_and_leaves_the_key_gone(
    services, flink_job, replicas, tmp_path
):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        per_window_settings(flink={"execution.checkpointing.interval": f"{CHECKPOINT_S} s"}),
    )
    snapshots, features = config["topics.snapshots.name"], config["topics.features.name"]
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    replica = replicas(config, 18611)
    replica.wait_ready()
    # Windows 0..9: window 9 stays open, so windows 0..8 are learned.
    stack.produce_json(config["topics.events.name"], events(range(10)), key_field="entity")
    stack.wait_until(lambda: all(n_learned(replica, key) == 9 for key in KEYS), 90, "every key's 9th window")

    checkpoints = completed_checkpoints(job_id)
    stack.wait_until(lambda: completed_checkpoints(job_id) > checkpoints, 2 * CHECKPOINT_S + 10, "a checkpoint")
    checkpoints = completed_checkpoints(job_id)
    stack.produce_raw(config["topics.deletions.name"], [(DELETED.encode(), b"", None)])
    stack.wait_until(
        lambda: records_for(snapshots, DELETED, 2)[-1:] == [None], CHECKPOINT_S - 2, "the learner's snapshot tombstone"
    )
    # Between the request and its completion: no checkpoint has taken the request's offset and the
    # state removal, nor committed the features tombstone.
    assert completed_checkpoints(job_id) == checkpoints, "a checkpoint came before the kill: the test proves nothing"
    assert records_for(features, DELETED)[-1:] != [None]
    restored = restores(job_id)
    for pid in stack.taskmanager_daemon_pids():
        stack.kill_with_workers(pid)
    stack.script("flink.sh", "start")  # a new TaskManager, as a supervisor would start
    stack.wait_until(lambda: restores(job_id) > restored and stack.job_state(job_id) == "RUNNING", 120, "recovery")

    # The restored job read the request again and removed the key's state, restored with the checkpoint.
    stack.wait_until(
        lambda: stack.job_metrics(job_id, "keys_deleted").get("keys_deleted") == 1,
        60,
        lambda: f"keys_deleted {stack.job_metrics(job_id, 'keys_deleted')} to be 1",
    )
    stack.wait_until(
        lambda: records_for(features, DELETED)[-1:] == [None],
        2 * CHECKPOINT_S + 10,
        "the features tombstone, committed by the restored job's checkpoint",
    )
    assert records_for(snapshots, DELETED)[-1] is None
    assert replica.http("GET", f"/models/{DELETED}")[0] == 404
    assert replica.metric("serving_keys_removed_total") == 2  # its model and its features
    assert replica.metric("serving_models") == len(KEYS) - 1

    # Windows 9..11 close: the key comes back as a new one (window 9's row, still in its open window when
    # the request came, is its first), while the others go on from their 9 windows.
    stack.produce_json(config["topics.events.name"], events(range(10, 13)), key_field="entity")
    stack.wait_until(
        lambda: all(n_learned(replica, key) == (3 if key == DELETED else 12) for key in KEYS),
        90,
        lambda: f"n_learned 12, and 3 for {DELETED}: {[n_learned(replica, key) for key in KEYS]}",
    )
    model = replica.http("GET", f"/models/{DELETED}")[1]
    assert (model["model_version"], model["window_end_ms"]) == (3, 12 * WINDOW_MS)
    after = records_for(snapshots, DELETED)
    last_tombstone = len(after) - 1 - after[::-1].index(None)
    versions = [s.model_version for s in stack.read_snapshots(config) if s.key == DELETED][-3:]
    assert versions == [1, 2, 3] and len(after) - last_tombstone - 1 == 3
    assert stack.job_metrics(job_id, "keys_deleted") == {"keys_deleted": 1}
    assert {replica.http("GET", f"/models/{key}")[1]["model_version"] for key in KEYS if key != DELETED} == {12}
