"""Model safety on the real stack: drift handling, gated publishing with rollback in serving, priors.

Each test replays a finite stream through jobs/learner_job.py (the source is bounded at the topic's
end offsets) and compares what came out. One event per key and window, so one feature row each.
"""

import json
import math
import random

import pytest

from scripts import stack
from tests.unit.models import SGD_MODEL as MODEL

WINDOW_MS = 1000


def concept(x1, x2):
    return x1 + x2 > 0


def events(stream_by_key, start_window=0):
    """`stream_by_key`: key -> [(x1, x2, label)], one per window from `start_window`; in event-time order."""
    out = [
        {"entity": key, "x1": x1, "x2": x2, "label": label, "ts": (start_window + i) * WINDOW_MS + 1}
        for key, rows in stream_by_key.items()
        for i, (x1, x2, label) in enumerate(rows)
    ]
    return sorted(out, key=lambda e: e["ts"])


def points(seed, n, label=concept):
    r = random.Random(seed)
    return [(x1, x2, label(x1, x2)) for x1, x2 in ((r.uniform(-1, 1), r.uniform(-1, 1)) for _ in range(n))]


def job_config(tmp_path, name, safety, **overrides):
    return stack.isolated_config(
        tmp_path / name,
        "conf/job.yaml",
        {
            "source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "model": MODEL,
            "metric": {"class": "metrics.Accuracy"},
            "safety": safety,
            **overrides,
        },
    )


def run_jobs(flink_job, configs, stream):
    """Produce the same events for every config, run all jobs at once, wait until each has finished."""
    job_ids = []
    for config in configs:
        stack.produce_json(config["topics.events.name"], stream, key_field="entity")
        job_ids.append(flink_job("jobs/learner_job.py", "--config", config.source))
    for job_id in job_ids:
        stack.wait_for_job_state(job_id, "FINISHED", timeout_s=300)


def predictions_by_key(config):
    by_key = {}
    for record in stack.read_topic(config["topics.predictions.name"], 10**9, timeout_s=5):
        p = json.loads(record.value)
        by_key.setdefault(p["model_key"], []).append(p)
    return {key: sorted(ps, key=lambda p: p["window_end_ms"]) for key, ps in by_key.items()}


def snapshots_of(config):
    return stack.read_snapshots(config)


def accuracy(predictions, rows):
    return sum((p["prediction"] > 0.5) == label for p, (_, _, label) in zip(predictions, rows)) / len(rows)


@pytest.mark.timeout(480)
def test_drift_reset_beats_no_drift_handling_after_an_abrupt_concept_drift(services, flink_job, tmp_path):
    # The concept reverses abruptly after 1,000 rows of each key (the worst case of an abrupt drift).
    keys = ["sensor-a", "sensor-b", "sensor-c"]
    streams = {
        key: points(i, 1000) + points(100 + i, 500, lambda x1, x2: not concept(x1, x2)) for i, key in enumerate(keys)
    }
    on = job_config(tmp_path, "on", {"drift": {"enabled": True, "action": "reset"}})
    off = job_config(tmp_path, "off", {})
    run_jobs(flink_job, [on, off], events(streams))

    with_handling, without = predictions_by_key(on), predictions_by_key(off)
    margin = 0.1
    for key in keys:
        assert len(with_handling[key]) == len(without[key]) == 1500
        after_on = accuracy(with_handling[key][1000:], streams[key][1000:])
        after_off = accuracy(without[key][1000:], streams[key][1000:])
        assert after_on > after_off + margin, f"{key}: {after_on:.3f} with drift handling, {after_off:.3f} without"
    drifts = [json.loads(r.value) for r in stack.read_topic(on["topics.drifts.name"], 10**9, timeout_s=5)]
    assert {d["model_key"] for d in drifts if d["action"] == "reset" and d["window_end_ms"] > 1000 * WINDOW_MS} == set(
        keys
    )
    assert not stack.read_topic(off["topics.drifts.name"], 10**9, timeout_s=2)
    latest = {s.key: s for s in snapshots_of(on)}
    assert all(latest[key].extra["drift"]["count"] >= 1 for key in keys)


@pytest.mark.timeout(480)
def test_a_poisoned_burst_is_held_back_and_serving_rolls_back_only_that_key(services, flink_job, replicas, tmp_path):
    config = job_config(
        tmp_path,
        "gate",
        {
            "gate": {
                "enabled": True,
                "window": 50,
                "margin": 0.1,
                "min_rows": 20,
                "rollback": True,
                "rollback_margin": 0.2,
            }
        },
        snapshots={"policy": "every_n_updates", "every_n_updates": 10, "max_wait_seconds": 0},
    )  # counts only
    clean = {key: points(i, 550) for i, key in enumerate(["book-1", "book-2", "book-3"])}
    # book-1's last 150 rows have their labels flipped: a poisoned burst.
    clean["book-1"] = clean["book-1"][:400] + [(x1, x2, not y) for x1, x2, y in clean["book-1"][400:]]
    replica = replicas(config, 18301)
    replica.wait_ready()
    run_jobs(flink_job, [config], events(clean))

    snapshots = snapshots_of(config)
    poisoned = [s for s in snapshots if s.key == "book-1"]
    rollbacks = [s for s in poisoned if "rollback" in s.extra]
    assert len(rollbacks) == 1, [s.extra for s in poisoned[-5:]]
    rollback = rollbacks[0]
    after_burst = [s for s in poisoned if s.window_end_ms > 400 * WINDOW_MS]
    # The gate let nothing through once the burst began but the rollback record itself.
    assert after_burst == [rollback] and rollback.extra["held_back"] >= 1
    good = next(s for s in poisoned if s.model_version == rollback.extra["rollback"]["to_version"])
    for key in ("book-2", "book-3"):
        versions = [s for s in snapshots if s.key == key]
        assert len(versions) == 55 and not any("rollback" in s.extra for s in versions)
        assert versions[-1].extra["held_back"] == 0

    stack.wait_until(lambda: replica.http("GET", "/models/book-1")[1].get("rollback"), 60, "the replica to roll back")
    status, described = replica.http("GET", "/models/book-1")
    assert status == 200 and described["rollback"]["to_version"] == good.model_version
    x = {"x1_avg": 0.3, "x2_avg": -0.1}
    status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": x})
    assert status == 200
    assert answer["prediction"] == pytest.approx(good.model().predict_proba_one(x)[True], abs=1e-12)
    for key in ("book-2", "book-3"):
        status, other = replica.http("GET", f"/models/{key}")
        assert status == 200 and not other.get("rollback") and other["model_version"] == 550
    assert replica.metric("serving_rollbacks_total") == 1


@pytest.mark.timeout(480)
def test_a_new_key_starts_from_the_global_prior_and_beats_a_fresh_model(services, flink_job, tmp_path):
    # Five keys share one concept for 200 windows; then a key never seen before arrives.
    veterans = {f"book-{i}": points(i, 200) for i in range(5)}
    newcomer = points(99, 20)
    stream = events(veterans) + events({"new-book": newcomer}, start_window=200)
    # LogLoss makes the job emit probabilities (Accuracy would make it emit labels).
    configs = {
        prior: job_config(tmp_path, prior, {"cold_start": {"prior": prior}}, metric={"class": "metrics.LogLoss"})
        for prior in ("global", "none")
    }
    run_jobs(flink_job, configs.values(), stream)

    first = {prior: predictions_by_key(config)["new-book"][:10] for prior, config in configs.items()}

    def log_loss(predictions):
        losses = [
            -math.log(min(max(p["prediction"] if y else 1 - p["prediction"], 1e-15), 1.0))
            for p, (_, _, y) in zip(predictions, newcomer)
        ]
        return sum(losses) / len(losses)

    assert first["none"][0]["prediction"] == 0.5  # an untrained model knows nothing
    assert first["global"][0]["prediction"] != 0.5 and first["global"][0]["model_version"] == 0
    assert log_loss(first["global"]) < log_loss(first["none"]) - 0.3
    assert accuracy(first["global"], newcomer) >= accuracy(first["none"], newcomer)
    newest = [s for s in snapshots_of(configs["global"]) if s.key == "new-book"][-1]
    assert newest.extra["prior"] == "global" and newest.n_learned == 20


@pytest.mark.timeout(480)
def test_quarantined_rows_go_to_the_dead_letter_topic_and_are_not_learned(services, flink_job, tmp_path):
    config = job_config(
        tmp_path,
        "quality",
        {"quality": {"enabled": True, "max_sigma": 6, "warmup_rows": 30, "max_repeats": 3}},
        snapshots={"policy": "every_window"},
    )
    rows = points(7, 120)
    rows[80] = (50.0, 0.2, True)  # a sensor glitch
    rows[100:106] = [(0.25, 0.25, True)] * 6  # a stuck source: the last 3 repeats are quarantined
    stream = events({"sensor": rows, "healthy": points(8, 120)})
    stream.append({"entity": "sensor", "x1": "not a number", "x2": 1, "label": True, "ts": 1})  # rejected by SQL
    run_jobs(flink_job, [config], stream)

    dead = stack.read_topic(config["topics.dead_letters.name"], 5, timeout_s=30)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert len(dead) == 5, reasons
    assert reasons[:3] == [f"the same features for {n} rows in a row (a stuck source?)" for n in (4, 5, 6)]
    assert sum(r.startswith("x1_avg=50.0 is ") for r in reasons) == 1
    assert "x1 missing or not a number" in reasons
    quarantined = [json.loads(r.value) for r in dead if dict(r.headers).get("source") == b"learner.quality"]
    assert {q["key"] for q in quarantined} == {"sensor"} and {q["window_end_ms"] for q in quarantined} == {
        81_000,
        105_000,
        106_000,
        104_000,
    }
    latest = {s.key: s for s in snapshots_of(config)}
    assert latest["sensor"].n_learned == 120 - 4 and latest["healthy"].n_learned == 120
    assert len(predictions_by_key(config)["sensor"]) == 120  # quarantined rows are still predicted
