"""Bad events never stop the job and are never silently dropped: they reach the dead-letter topic
with their original bytes and a reason, and the valid events give exactly a clean run's results."""

import json

import pytest
from kafka import KafkaProducer

from tests.integration import stack

KEYS = ["a", "b", "c"]
WINDOWS = 80


def valid_events():
    return [{"entity": key, "x1": (w * 7 % 11) / 3, "x2": i - 1.0, "label": (w + i) % 3 == 0, "ts": w * 1000 + 1}
            for w in range(WINDOWS) for i, key in enumerate(KEYS)]


BAD = {
    b"{not json": "malformed JSON",
    b'{"entity": "a", "x1": NaN, "x2": 1.0, "label": true, "ts": 5001}': "NaN or infinite number",
    b'{"entity": "a", "x1": "abc", "x2": 1.0, "label": true, "ts": 5001}': "x1 missing or not a number",
    b'{"x1": 1.0, "x2": 1.0, "label": true, "ts": 5001}': "missing key: entity",
    b'{"entity": "b", "x1": 1.0, "x2": 1.0, "label": "yes", "ts": 5001}': "label is not a boolean",
    b'{"entity": "b", "x1": 1.0, "x2": 1.0, "label": true, "ts": "soon"}': "ts missing or not an integer",
    b'{"entity": "c", "x1": 1.0, "x2": 1.0, "label": true, "ts": 5001, "pad": "' + b"x" * 20000 + b'"}':
        "oversized: more than 10000 characters",
    b"[1, 2, 3]": "malformed JSON",
}


def run(tmp_path, flink_job, payloads):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {
        "source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0},
        "window": {"size_seconds": 1},
        "snapshots": {"policy": "every_window"},
    })
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    for payload in payloads:
        producer.send(config["topics.events.name"], payload)
    producer.flush()
    producer.close()
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.wait_for_job_state(job_id, "FINISHED", timeout_s=240)
    predictions = sorted(json.loads(r.value)["prediction"] for r in stack.read_topic(config["topics.predictions.name"], 10**9, 5))
    snapshots = stack.read_snapshots(config)
    dead = stack.read_topic(config["topics.dead_letters.name"], 10**9, 5)
    return predictions, snapshots, dead


@pytest.mark.timeout(420)
def test_bad_events_are_dead_lettered_and_the_rest_learn_as_a_clean_run(services, flink_job, tmp_path):
    clean = [json.dumps(e).encode() for e in valid_events()]
    mixed = list(clean)
    for i, payload in enumerate(BAD):
        mixed.insert(20 + 25 * i, payload)  # spread through the stream

    clean_predictions, clean_snapshots, clean_dead = run(tmp_path / "clean", flink_job, clean)
    predictions, snapshots, dead = run(tmp_path / "mixed", flink_job, mixed)

    # Reconciliation: every produced event is either accepted or dead-lettered.
    assert clean_dead == []
    assert len(dead) == len(BAD) and len(mixed) == len(clean) + len(dead)
    reasons = {r.value: dict(r.headers)["reason"].decode() for r in dead}
    assert reasons == BAD
    # The valid stream's results equal the clean run's.
    assert predictions == clean_predictions
    assert sorted((s.key, s.model_version, s.metric_value) for s in snapshots) == \
           sorted((s.key, s.model_version, s.metric_value) for s in clean_snapshots)
    assert len(snapshots) == len(KEYS) * WINDOWS
