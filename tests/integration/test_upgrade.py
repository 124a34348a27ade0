"""Upgrade a running learner from a savepoint with new SQL (one more feature column) and a new
hyper-parameter: every key's model_version and n_learned continue, none resets, no event is lost."""

import os

import pytest

from scripts import stack

KEYS = [f"u{i}" for i in range(4)]
WINDOW_MS = 1000


def events(windows):
    return [{"entity": key, "x1": float(w % 5), "x2": float(i), "label": (w + i) % 2 == 0, "ts": w * WINDOW_MS + 1}
            for w in windows for i, key in enumerate(KEYS)]


def closer(ts):
    return {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": ts}


def latest_snapshots(config):
    latest = {}
    for snapshot in stack.read_snapshots(config, timeout_s=3):
        latest.setdefault(snapshot.key, []).append(snapshot)
    return latest


def wait_for_versions(config, n_learned, timeout_s):
    import time
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = latest_snapshots(config)
        if all(key in latest and latest[key][-1].n_learned >= n_learned for key in KEYS):
            return latest
        time.sleep(1)
    raise AssertionError(f"keys did not reach n_learned={n_learned}: "
                         f"{ {k: v[-1].n_learned for k, v in latest_snapshots(config).items()} }")


@pytest.mark.timeout(420)
def test_upgrade_from_savepoint_continues_every_model(services, flink_job, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {
        # No partition is taken for idle while the upgraded job re-reads; closers move the watermark.
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
        "window": {"size_seconds": 1},
        "snapshots": {"policy": "every_window"},
    })
    job_v1 = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.produce_json(config["topics.events.name"], events(range(0, 60)), "entity")
    stack.produce_to_every_partition(config["topics.events.name"], closer(59_500))  # closes window 58
    before = wait_for_versions(config, 59, timeout_s=120)  # window 59 stays open until the drain

    # v2: one more aggregated feature column in the SQL, a different learning rate in the config.
    sql_v2 = open(os.path.join(stack.PROJECT_DIR, "sql/features.sql")).read().replace(
        "  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MAX(x1) AS x1_max,\n")
    (tmp_path / "features_v2.sql").write_text(sql_v2)
    config_v2 = stack.write_config(config, tmp_path / "conf" / "job_v2.yaml", {
        "features": {"columns": ["x1_avg", "x2_avg", "x1_max"]},
        "sql": {"ddl": [p if os.path.basename(p) != "features.sql" else str(tmp_path / "features_v2.sql") for p in config["sql.ddl"]]},
        "model": {"steps": [{"class": "preprocessing.StandardScaler"},
                            {"class": "linear_model.LogisticRegression",
                             "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.2}}}}]},
    })
    out = stack.script("upgrade.sh", job_v1, "jobs/learner_job.py", "--config", config_v2.source)
    job_v2 = out.strip().splitlines()[-1]
    stack.wait_for_job_state(job_v2, "RUNNING", timeout_s=60)
    try:
        stack.produce_json(config["topics.events.name"], events(range(60, 120)), "entity")
        stack.produce_to_every_partition(config["topics.events.name"], closer(10**6))
        after = wait_for_versions(config, 120, timeout_s=120)
    finally:
        stack.cancel(job_v2)

    for key in KEYS:
        versions = [s.model_version for s in after[key]]
        assert versions == list(range(1, 121)), f"{key}: versions {versions[:5]}...{versions[-5:]}"
        assert after[key][-1].n_learned == 120
        assert set(after[key][-1].model()["StandardScaler"].means) == {"x1_avg", "x2_avg", "x1_max"}
        assert before[key][-1].model_version >= 59
