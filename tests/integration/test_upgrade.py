"""Upgrades without a gap: three upgrades of a running learner (changed SQL, the same SQL with a new
hyper-parameter, changed SQL again), each taken in the middle of a window whose other half of events
is produced after the savepoint. Every event is learned in its own window's row exactly once: the sum
of a `COUNT(*)` feature over the rows each key learned equals the events produced for it, every key's
versions continue without a reset, and the changed SQL's new columns reach the models."""

import json
import os

import pytest

from scripts import stack
from tests.integration.test_learner_job import edited_ddl

KEYS = [f"u{i}" for i in range(200)]
WINDOWS = 60
PER_WINDOW = 10
WINDOW_MS = 1000
UPGRADES = (15, 30, 45)  # each in the middle of this window


def events(w, halves=(0, 1)):
    """The events of window w, in ts order (each partition then reads its keys' events in ts order):
    the first half (0) or the second (1) of each key's ten."""
    return [
        {
            "entity": key,
            "x1": float((w + k + j) % 7),
            "x2": float(j),
            "label": (w + k + j) % 3 == 0,
            "ts": w * WINDOW_MS + j * 90 + 1,
        }
        for j in range(PER_WINDOW)
        if j * 2 // PER_WINDOW in halves
        for k, key in enumerate(KEYS)
    ]


COUNT = ("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  COUNT(*) AS n_events,\n")
MAX_X1 = ("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MAX(x1) AS x1_max,\n")
MIN_X2 = ("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MIN(x2) AS x2_min,\n")


def model(lr):
    return {
        "steps": [
            {"class": "preprocessing.StandardScaler"},
            {
                "class": "linear_model.LogisticRegression",
                "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": lr}}},
            },
        ]
    }


def version(tmp_path, config, name, edits, columns, lr):
    """A new version of the job's config: features.sql with `edits`, its feature columns, a learning rate."""
    folder = tmp_path / name
    folder.mkdir()
    ddl = [os.path.join(stack.PROJECT_DIR, path) for path in edited_ddl(folder, {"sql/features.sql": edits})]
    return stack.write_config(
        config,
        tmp_path / "conf" / f"{name}.yaml",
        {"sql": {"ddl": ddl}, "features": {"columns": columns}, "model": model(lr)},
    )


def predictions(config, expected):
    return stack.read_topic(config["topics.predictions.name"], expected=expected, timeout_s=120)


@pytest.mark.timeout(420)
def test_three_upgrades_mid_window_learn_every_event_once(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            # No partition is taken for idle while a job restores; the closers move the watermark at the end.
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": WINDOW_MS // 1000},
        },
    )
    base = ["x1_avg", "x2_avg", "n_events"]
    versions = [
        version(tmp_path, config, "v1", [COUNT], base, 0.05),
        version(tmp_path, config, "v2", [COUNT, MAX_X1], base + ["x1_max"], 0.05),  # changed SQL
        version(tmp_path, config, "v3", [COUNT, MAX_X1], base + ["x1_max"], 0.2),  # the same SQL
        version(tmp_path, config, "v4", [COUNT, MAX_X1, MIN_X2], base + ["x1_max", "x2_min"], 0.2),  # changed
    ]
    topic = config["topics.events.name"]
    job = flink_job("jobs/learner_job.py", "--config", versions[0].source)
    produced, start, jobs = 0, 0, [job]
    for new, upgrade_at in zip(versions[1:], UPGRADES):
        # Up to the upgrade's window, and the first half of its events: the window is open.
        batch = [e for w in range(start, upgrade_at) for e in events(w, (1,) if w == start and start else (0, 1))]
        batch += events(upgrade_at, (0,))
        produced += stack.produce_json(topic, batch, "entity")
        predictions(config, len(KEYS) * upgrade_at)  # every window before it learned
        out = stack.script("upgrade.sh", job, "jobs/learner_job.py", "--config", new.source)
        job = out.strip().splitlines()[-1]
        jobs.append(job)
        stack.wait_for_job_state(job, "RUNNING", timeout_s=60)
        assert ("same SQL" in out) == (new is versions[2]), out
        start = upgrade_at
    try:
        batch = events(start, (1,)) + [e for w in range(start + 1, WINDOWS) for e in events(w)]
        produced += stack.produce_json(topic, batch, "entity")
        stack.produce_to_every_partition(
            topic, {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": WINDOWS * WINDOW_MS + 5_000}
        )
        published = [json.loads(r.value) for r in predictions(config, len(KEYS) * WINDOWS)]
        replayed = stack.job_metrics(job, "replayed_rows")
        exported = stack.prometheus_counters(job, "replayed_rows")
    finally:
        stack.cancel(job)
    latest = {}
    for snapshot in stack.read_snapshots(config, expected=None):
        if snapshot.key not in latest or snapshot.model_version > latest[snapshot.key].model_version:
            latest[snapshot.key] = snapshot
    dead = stack.read_topic(config["topics.dead_letters.name"], expected=None, timeout_s=5)

    assert produced == len(KEYS) * WINDOWS * PER_WINDOW and dead == []
    # One prediction per key and window: no window fired early, none twice.
    assert sorted((p["model_key"], p["window_end_ms"]) for p in published) == sorted(
        (key, (w + 1) * WINDOW_MS) for key in KEYS for w in range(WINDOWS)
    )
    learned_events = 0
    for key in KEYS:
        final = latest[key]
        assert (final.n_learned, final.model_version) == (WINDOWS, WINDOWS), key
        scaler = final.model()["StandardScaler"]
        # The scaler saw every learned row's count: their sum is the key's events, each window whole.
        assert scaler.counts["n_events"] == WINDOWS, key
        assert scaler.means["n_events"] == pytest.approx(PER_WINDOW, abs=1e-12), key
        learned_events += round(scaler.means["n_events"] * scaler.counts["n_events"])
        assert set(scaler.means) == {"x1_avg", "x2_avg", "n_events", "x1_max", "x2_min"}
    assert learned_events == produced
    # The replay guard's counter is exported (REST and Prometheus); no row was a replay here, as the
    # re-read started at the oldest open window.
    assert replayed == {"replayed_rows": 0.0} and exported == {"replayed_rows": 0.0}, (replayed, exported)
