"""Bad input at scale, one job: 26 classes of bad events, 50 payloads each, mixed into 20,000 valid
events over two partitions. Each bad payload is dead-lettered exactly once, as its original bytes, with
a reason naming what was wrong and counted in its exported counter; the valid events give exactly the
results of a clean run (plain River on each key's rows, which is what a clean run gives:
tests/integration/test_learner_job.py).

Late events need a watermark that has passed them, whatever order the source reads the two partitions
in, so the stream goes in two phases: the late events are produced once the job has closed window 199.
"""

import collections
import json
import re

import pytest

from scripts import stack
from tests.integration.learner_rows import METRIC, MODEL, WINDOW_MS, latest_by_key, plain_river, synthetic_row

# 36 plain keys and 4 in other scripts: a key may be any Unicode text without control characters.
KEYS = [f"k{k}" for k in range(36)] + ["café", "書店", "ключ", "🙂 smile"]
WINDOWS = 500  # 40 keys x 500 windows, one event each: 20,000 valid events
PER_CLASS = 50
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01


def event(key: str, w: int, **changes) -> dict:
    """The valid event of key `key` in window w (its feature row is learner_rows.synthetic_row), changed."""
    x, y = synthetic_row(KEYS.index(key) if key in KEYS else 0, w)
    return {"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1, **changes}


def valid_payload(key: str, w: int) -> bytes:
    e = event(key, w)
    k = KEYS.index(key)
    if k % 9 == 0:  # text that merely contains "NaN" or "Infinity" is no number
        e["title"] = "Infinity Ring, NaN"
    if k % 9 == 1:  # nesting within the parser's limit, in a field the job does not read
        e["extra"] = json.loads("[" * 50 + "]" * 50)
    if k % 9 == 2:  # a field the job does not read may repeat: only the fields it reads must be unique
        return json.dumps(e).encode()[:-1] + b', "note": 1, "note": 2}'
    return json.dumps(e, ensure_ascii=k % 2 == 0).encode()


def dumps(e: dict) -> bytes:
    return json.dumps(e).encode()


def bad(name, i, w):
    """Payload i of the class `name`, for a stream at window w (its `ts`, where it has one, is not late)."""
    ts = w * WINDOW_MS + 500 + i  # distinct bytes per payload, in window w (i < 500)
    key = KEYS[i % len(KEYS)]
    valid = dumps(event(key, w, ts=ts))
    return {
        "far_future_ts": lambda: dumps(event(key, w, ts=FAR_FUTURE_MS + i)),
        "negative_ts": lambda: dumps(event(key, w, ts=-1 - i)),
        "late_ts": lambda: dumps(event(key, i, ts=i * WINDOW_MS + 2)),  # windows 0 .. 49, long closed
        "not_utf8": lambda: valid[:-1] + b', "note": "\xff\xfe%d"}' % i,
        "empty": lambda: b"",
        "tombstone": lambda: None,
        "deep_nesting": lambda: valid[:-1] + b', "extra": ' + b"[" * (1000 + i) + b"]" * (1000 + i) + b"}",
        "duplicate_field": lambda: valid[:-1] + b', "x1": %d}' % i,
        "control_char_in_key": lambda: dumps(event(key, w, ts=ts, entity=f"k\u0001{i}")),
        "raw_control_char": lambda: valid.replace(b'"entity": "', b'"entity": "\x07', 1),
        "lookalike_key_name": lambda: valid.replace(b'"entity"', '"\u0435ntity"'.encode(), 1),  # Cyrillic e
        "huge_x1": lambda: valid.replace(b'"x1": ', b'"x1": 1e309, "_x1": ', 1),
        "huge_x2": lambda: valid.replace(b'"x2": ', b'"x2": -1e400, "_x2": ', 1),
        "huge_ts": lambda: dumps(event(key, w, ts=10**25 + i)),
        "long_number": lambda: valid.replace(b'"x1": ', b'"x1": 1' + b"0" * 1001 + b', "_x1": ', 1),
        "x1_wrong_type": lambda: dumps(event(key, w, ts=ts, x1=[True, "abc", [1], {"v": 1}][i % 4])),
        "label_wrong_type": lambda: dumps(event(key, w, ts=ts, label=["yes", 1, "True", 2.5][i % 4])),
        "ts_wrong_type": lambda: dumps(event(key, w, ts=[f"soon {i}", True][i % 2], n=i)),
        "oversized": lambda: valid[:-1] + b', "pad": "' + b"x" * (10_000 + i) + b'"}',
        "missing_entity": lambda: dumps({k: v for k, v in event(key, w, ts=ts).items() if k != "entity"}),
        "empty_entity": lambda: dumps(event(key, w, ts=ts, entity=" " * (i % 3))),
        "missing_x2": lambda: dumps({k: v for k, v in event(key, w, ts=ts).items() if k != "x2"}),
        "not_an_object": lambda: [b"[1, %d]" % i, b'"text %d"' % i, b"%d" % i, b"null %d" % i][i % 4],
        "nan_literal": lambda: valid.replace(b'"x1": ', b'"x1": NaN, "_x1": ', 1),
        "truncated": lambda: valid[: len(valid) // 2 + i % 5],
        "trailing_text": lambda: valid + b' {"n": %d}' % i,
    }[name]()


# What each class's dead letters say: the reason, or for a reason with a measured or parser-given detail
# the text up to its colon (which names the counter: java/realtime_learning/DeadLetterReason.java).
REASONS = {
    "far_future_ts": "ts more than 60 s ahead of the clock",
    "negative_ts": "ts is negative",
    "late_ts": "late:",
    "not_utf8": "not UTF-8",
    "empty": "empty event",
    "tombstone": "tombstone: no value",
    "deep_nesting": "nesting too deep: more than 1000 levels",
    "duplicate_field": "duplicate field: x1",
    "control_char_in_key": "entity has a control character",
    "raw_control_char": "malformed JSON:",
    "lookalike_key_name": "missing key: entity",
    "huge_x1": "x1 is not a finite number",
    "huge_x2": "x2 is not a finite number",
    "huge_ts": "ts missing or not an integer",
    "long_number": "number too long: more than 1000 characters",
    "x1_wrong_type": "x1 missing or not a number",
    "label_wrong_type": "label is not a boolean",
    "ts_wrong_type": "ts missing or not an integer",
    "oversized": "oversized: more than 10000 characters",
    "missing_entity": "missing key: entity",
    "empty_entity": "missing key: entity",
    "missing_x2": "x2 missing or not a number",
    "not_an_object": "not a JSON object",
    "nan_literal": "malformed JSON:",
    "truncated": "malformed JSON:",
    "trailing_text": "malformed JSON: text after the object",
}
DETAILED = ("late:", "malformed JSON:")


def reason_class(reason: str) -> str:
    """A reason as REASONS states it: measured and parser-given details cut off."""
    return next(
        (prefix for prefix in DETAILED if reason.startswith(prefix) and reason != REASONS["trailing_text"]), reason
    )


def counter_name(reason: str) -> str:
    """The Flink counter of a reason, as DeadLetterReason.metricName names it."""
    head = reason.split(":", 1)[0].lower()
    return "dead_letters_" + re.sub(r"[^a-z0-9]+", "_", head).strip("_")


def phase(windows, bad_classes, topic):
    """The valid events of `windows` (keyed, so each key keeps its partition) with the bad payloads of
    `bad_classes` ((class, i) pairs) spread evenly among them, alternating between the two partitions.
    A bad payload's `ts`, where it has a valid one, is in the window of the events around it: a ts
    ahead of them would move the watermark and make them late. Returns the payloads sent, by class."""
    records = [(key.encode(), valid_payload(key, w), None) for w in windows for key in KEYS]
    step = len(records) // (len(bad_classes) + 1)
    sent = []
    for n, (name, i) in enumerate(bad_classes):
        position = (n + 1) * step + n
        payload = bad(name, i, windows[0] + ((n + 1) * step) // len(KEYS))
        key = b"tombstone" if payload is None else None  # Kafka takes a null value only with a key
        records.insert(position, (key, payload, n % 2))
        sent.append((name, payload))
    stack.produce_raw(topic, records)
    return sent


@pytest.mark.timeout(360)
def test_every_bad_input_class_is_dead_lettered_once_and_the_valid_events_learn_as_a_clean_run(
    services, flink_job, tmp_path
):
    assert len(REASONS) >= 20
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "model": MODEL,
            "metric": METRIC,
        },
    )
    topic = config["topics.events.name"]
    assert config["topics.events.partitions"] == 2
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)

    # Each class's payloads, half in each phase (the late ones all in the second).
    half = WINDOWS // 2
    classes = [(name, i) for i in range(PER_CLASS) for name in REASONS]
    first = [(name, i) for name, i in classes if name != "late_ts" and i % 2 == 0]
    sent = phase(range(half), first, topic)
    # Window 199 closed for every key: the watermark is past every late payload's window (0 .. 49).
    stack.read_topic(config["topics.predictions.name"], expected=len(KEYS) * 200, timeout_s=120)
    sent += phase(range(half, WINDOWS), [c for c in classes if c not in first], topic)
    # One event past the last window on each partition closes it; its own window stays open.
    stack.produce_to_every_partition(topic, event(KEYS[0], WINDOWS + 5))

    bad_sent = sent
    predictions = [
        json.loads(r.value)
        for r in stack.read_topic(config["topics.predictions.name"], expected=len(KEYS) * WINDOWS, timeout_s=150)
    ]
    dead = stack.read_topic(config["topics.dead_letters.name"], expected=len(bad_sent), timeout_s=60)
    dead += stack.read_topic(config["topics.dead_letters.name"], expected=None, timeout_s=10)[len(dead) :]

    # The invariant: accepted + dead-lettered == produced, each bad payload dead-lettered once, as its
    # own bytes (a tombstone as a tombstone), with its class's reason.
    assert len(bad_sent) == len(REASONS) * PER_CLASS
    got = collections.Counter((r.value, reason_class(dict(r.headers)["reason"].decode())) for r in dead)
    expected = collections.Counter((payload, REASONS[name]) for name, payload in bad_sent)
    assert got == expected, {
        "missing": [(p if p is None else p[:120], r) for (p, r) in (expected - got)][:10],
        "unexpected": [(p if p is None else p[:120], r) for (p, r) in (got - expected)][:10],
    }
    late = [dict(r.headers)["reason"].decode() for r in dead if dict(r.headers)["reason"].startswith(b"late:")]
    assert len(late) == PER_CLASS and all(re.fullmatch(r"late: \d+ s behind the watermark", r) for r in late), late[:3]
    assert min(int(r.split()[1]) for r in late) >= 100  # window <= 49 against a watermark past 199
    for record in dead:
        headers = dict(record.headers)
        assert int(headers["source.partition"]) in (0, 1) and int(headers["source.offset"]) >= 0

    # The accepted (valid) events give exactly a clean run's results: one prediction per key and
    # window, each plain River's progressive prediction, and plain River's model and metric.
    assert sorted((p["model_key"], p["window_end_ms"]) for p in predictions) == sorted(
        (key, (w + 1) * WINDOW_MS) for key in KEYS for w in range(WINDOWS)
    )
    published = {(p["model_key"], p["window_end_ms"]): p["prediction"] for p in predictions}
    latest = latest_by_key(stack.read_snapshots(config, expected=None))
    for k, key in enumerate(KEYS):
        rows = [synthetic_row(k, w) for w in range(WINDOWS)]
        model, metric = plain_river([])
        for w, (x, y) in enumerate(rows):
            probabilities = model.predict_proba_one(x)
            assert published[(key, (w + 1) * WINDOW_MS)] == pytest.approx(probabilities.get(True, 0.0), abs=1e-12), (
                key,
                w,
            )
            metric.update(y, probabilities)
            model.learn_one(x, y)
        assert latest[key].n_learned == WINDOWS, key
        assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9), key

    # Every class's exported counter (REST) counts its dead letters; nothing was quarantined or replayed.
    counters = collections.Counter(counter_name(dict(r.headers)["reason"].decode()) for r in dead)
    stack.wait_until(
        lambda: stack.job_metrics(job_id, "dead_letters_") == counters,
        60,
        lambda: f"REST counters {stack.job_metrics(job_id, 'dead_letters_')} to equal {dict(counters)}",
    )
    assert stack.job_metrics(job_id, "quarantined_rows") == {"quarantined_rows": 0.0}
    assert stack.job_metrics(job_id, "replayed_rows") == {"replayed_rows": 0.0}
