"""Bad events never stop the job and are never silently dropped: they reach the dead-letter topic
with their original bytes and a reason, and the valid events give exactly a clean run's results."""

import collections
import json
import math

import pytest
from kafka import KafkaProducer

from scripts import stack

KEYS = ["a", "b", "c"]
WINDOWS = 80


def valid_events():
    events = [
        {"entity": key, "x1": (w * 7 % 11) / 3, "x2": i - 1.0, "label": (w + i) % 3 == 0, "ts": w * 1000 + 1}
        for w in range(WINDOWS)
        for i, key in enumerate(KEYS)
    ]
    # Text that merely contains "NaN" or "Infinity" is no number: valid.
    events.insert(30, {"entity": "a", "x1": 1.0, "x2": 2.0, "label": True, "ts": 10_002, "title": "Infinity Ring, NaN"})
    return events


FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01: it would close every window before it
BAD = {
    b"{not json": "malformed JSON:",  # and the parser's message
    b'{"entity": "a", "x1": NaN, "x2": 1.0, "label": true, "ts": 5001}': "malformed JSON:",  # not JSON
    b'{"entity": "a", "x1": 1e309, "x2": 1.0, "label": true, "ts": 5001}': "x1 is not a finite number",
    b'{"entity": "b", "x1": 1.0, "x2": -1e400, "label": true, "ts": 5001}': "x2 is not a finite number",
    b'{"entity": "a", "x1": 1.0, "x2": 1.0, "label": true, "ts": -5}': "ts is negative",
    b'{"entity": "c", "x1": 1.0, "x2": 1.0, "label": true, "ts": %d}'
    % FAR_FUTURE_MS: "ts more than 60 s ahead of the clock",
    b'{"entity": "a", "x1": "abc", "x2": 1.0, "label": true, "ts": 5001}': "x1 missing or not a number",
    b'{"x1": 1.0, "x2": 1.0, "label": true, "ts": 5001}': "missing key: entity",
    b'{"entity": "b", "x1": 1.0, "x2": 1.0, "label": "yes", "ts": 5001}': "label is not a boolean",
    b'{"entity": "b", "x1": 1.0, "x2": 1.0, "label": true, "ts": "soon"}': "ts missing or not an integer",
    b'{"entity": "c", "x1": 1.0, "x2": 1.0, "label": true, "ts": 5001, "pad": "'
    + b"x" * 20000
    + b'"}': "oversized: more than 10000 characters",
    b"[1, 2, 3]": "not a JSON object",
}


def reason_class(reason: str) -> str:
    """A reason as BAD states it: the parser's message after "malformed JSON:" cut off."""
    return "malformed JSON:" if reason.startswith("malformed JSON:") else reason


# The exported counter of each reason (java/realtime_learning/DeadLetterReason.java): the reason's text
# before its first colon names it, so measured details after the colon stay one counter.
COUNTER = {
    "malformed JSON:": "dead_letters_malformed_json",
    "not a JSON object": "dead_letters_not_a_json_object",
    "x1 is not a finite number": "dead_letters_x1_is_not_a_finite_number",
    "x2 is not a finite number": "dead_letters_x2_is_not_a_finite_number",
    "ts is negative": "dead_letters_ts_is_negative",
    "ts more than 60 s ahead of the clock": "dead_letters_ts_more_than_60_s_ahead_of_the_clock",
    "x1 missing or not a number": "dead_letters_x1_missing_or_not_a_number",
    "missing key: entity": "dead_letters_missing_key",
    "label is not a boolean": "dead_letters_label_is_not_a_boolean",
    "ts missing or not an integer": "dead_letters_ts_missing_or_not_an_integer",
    "oversized: more than 10000 characters": "dead_letters_oversized",
}


def run(tmp_path, flink_job, payloads):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_window"},
        },
    )
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    for payload in payloads:
        producer.send(config["topics.events.name"], payload)
    producer.flush()
    producer.close()
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.wait_for_job_state(job_id, "FINISHED", timeout_s=240)
    predictions = sorted(
        json.loads(r.value)["prediction"] for r in stack.read_topic(config["topics.predictions.name"], 10**9, 5)
    )
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
    reasons = {r.value: reason_class(dict(r.headers)["reason"].decode()) for r in dead}
    assert reasons == BAD
    # The valid stream's results equal the clean run's.
    assert predictions == clean_predictions
    assert sorted((s.key, s.model_version, s.metric_value) for s in snapshots) == sorted(
        (s.key, s.model_version, s.metric_value) for s in clean_snapshots
    )
    assert len(snapshots) == len(KEYS) * WINDOWS


@pytest.mark.timeout(300)
def test_a_late_event_and_an_overflowing_average_are_dead_lettered_and_each_window_learned_once(
    services, flink_job, tmp_path
):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_window"},
        },
    )
    flink_job("jobs/learner_job.py", "--config", config.source)
    topic = config["topics.events.name"]

    def event(w, key="a", x1=1.0):
        return {"entity": key, "x1": x1, "x2": 0.5, "label": w % 2 == 0, "ts": w * 1000 + 1}

    # Two valid events whose average overflows to infinity: the learner quarantines that row.
    huge = [event(w, "big", x1=1.5e308 if w == 2 else 1.0) for w in (1, 2, 2, 3)]
    stack.produce_json(topic, [event(w) for w in range(12)] + huge, key_field="entity")
    # Windows 0 .. 10 of key a closed (window 11 waits for a later event), and windows 1 .. 3 of "big".
    first = stack.read_topic(config["topics.predictions.name"], expected=14, timeout_s=120)
    stack.produce_json(topic, [event(0, x1=99.0)] + [event(w) for w in range(12, 15)], key_field="entity")
    dead = stack.read_topic(config["topics.dead_letters.name"], expected=2, timeout_s=60)
    predictions = stack.read_topic(config["topics.predictions.name"], expected=17, timeout_s=60)

    assert len(first) == 14
    reasons = {dict(r.headers)["reason"].decode(): json.loads(r.value) for r in dead}
    late = next(reason for reason in reasons if reason.startswith("late: "))
    assert reasons[late]["x1"] == 99.0 and late.endswith(" s behind the watermark"), late
    assert int(late.split()[1]) >= 9  # window 0 ended 10 s of event time before window 10 closed
    assert reasons["non-finite feature x1_avg=inf"] == {
        "key": "big",
        "window_end_ms": 3000,
        "label": True,
        "x1_avg": "inf",
        "x2_avg": 0.5,
    }
    by_key = {}
    for record in predictions:
        p = json.loads(record.value)
        by_key.setdefault(p["model_key"], []).append((p["window_end_ms"], p["prediction"]))
    # Every window exactly once: the late event neither reopened window 0 nor was learned elsewhere.
    assert sorted(w for w, _ in by_key["a"]) == [(w + 1) * 1000 for w in range(14)]
    # The quarantined row is predicted as null and not learned: the next window's prediction is a number.
    big = dict(by_key["big"])
    assert sorted(big) == [2000, 3000, 4000] and big[3000] is None and math.isfinite(big[4000])


@pytest.mark.timeout(300)
def test_each_dead_letter_reason_is_counted_in_an_exported_metric(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
            "window": {"size_seconds": 1},
        },
    )
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    topic = config["topics.events.name"]

    def event(w, x1=1.0):
        return {"entity": "a", "x1": x1, "x2": 0.5, "label": w % 2 == 0, "ts": w * 1000 + 1}

    stack.produce_json(topic, [event(w) for w in range(12)], key_field="entity")
    stack.read_topic(config["topics.predictions.name"], expected=11, timeout_s=120)  # windows 0 .. 10 closed
    # The bad events after the watermark passed their ts (5 s), so that none of them, nor the valid
    # events, is also late; then two late events, each with its own delay in the reason, one counter.
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP)
    for payload in BAD:
        producer.send(topic, payload)
    producer.flush()
    producer.close()
    stack.produce_json(
        topic, [event(0, x1=99.0), event(1, x1=98.0)] + [event(w) for w in range(12, 15)], key_field="entity"
    )
    dead = stack.read_topic(config["topics.dead_letters.name"], expected=len(BAD) + 2, timeout_s=60)

    reasons = [dict(r.headers)["reason"].decode() for r in dead]
    assert len(reasons) == len(BAD) + 2 and sum(r.startswith("late: ") for r in reasons) == 2, reasons
    expected = collections.Counter(
        "dead_letters_late" if r.startswith("late: ") else COUNTER[reason_class(r)] for r in reasons
    )
    assert len(expected) == len(set(BAD.values())) + 1  # eleven classes and late
    # REST metrics are fetched every few seconds (metrics.fetcher.update-interval): wait for them.
    stack.wait_until(
        lambda: stack.job_metrics(job_id, "dead_letters_") == expected,
        60,
        lambda: f"REST counters {stack.job_metrics(job_id, 'dead_letters_')} to equal {dict(expected)}",
    )
    assert stack.prometheus_counters(job_id, "dead_letters_") == expected
