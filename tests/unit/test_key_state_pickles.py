"""A key's state pickled before udfs/learner.py was split by concern still restores, and behaves as new.

Flink keeps each key's `KeyState` pickled (`Types.PICKLED_BYTE_ARRAY`), and a pickle names each class
by its module path, so a class moving module must stay loadable under the name old savepoints used.
`tests/unit/data/key_state-guarded-8edea04.state` is a key's state written by commit 8edea04 (main
before the split) with every guard on, so that it holds a DriftWatch, a GateState with two
PublishedVersions, a Duel and FeatureStats besides the KeyState. It was made by running this file:

    PYTHONPATH=. .venv/bin/python -m tests.unit.test_key_state_pickles tests/unit/data/key_state-guarded-8edea04.state

The test builds the same state with the current code and checks that the restored one is the same and
goes on to predict, learn and publish exactly as it does.
"""

import dataclasses
import os
import pickle
import pickletools
import random
import sys

from jobs.config import Config
from tests.unit.models import KEYRING, SIGNING
from tests.unit.models import SGD_MODEL as MODEL
from udfs.envelope import decode
from udfs.learner import KeyState, Learner, LearnerSettings, migrate

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "key_state-guarded-8edea04.state")
FEATURES = ["x1_avg", "x2_avg"]
SAFETY = {
    "drift": {"enabled": True, "action": "flag"},
    "gate": {"enabled": True, "window": 50, "margin": 0.5, "min_rows": 5, "rollback": True, "rollback_margin": 0.5},
    "challenger": {"enabled": True, "model": MODEL, "window": 100},
    "cold_start": {"prior": "global"},
    "quality": {"enabled": True, "max_sigma": 50, "warmup_rows": 10, "max_repeats": 1000},
}
# The state's lineage, fixed: from_config would take the wall clock.
GENERATION = 1_700_000_000_000


def guarded_learner() -> Learner:
    data = {
        "features": {"columns": FEATURES},
        "window": {"size_seconds": 1},
        "model": MODEL,
        "metric": {"class": "metrics.Accuracy"},
        "safety": SAFETY,
        "signing": SIGNING,
        "snapshots": {"policy": "every_n_updates", "every_n_updates": 10},
    }
    settings = LearnerSettings.from_config(Config(data, "job.yaml"))
    return Learner(dataclasses.replace(settings, generation=GENERATION), KEYRING)


def rows(seed: int, n: int, start: int = 0):
    r = random.Random(seed)
    for i in range(start, start + n):
        x1, x2 = r.uniform(-1, 1), r.uniform(-1, 1)
        yield (i + 1) * 1000, {"x1_avg": x1, "x2_avg": x2}, x1 + x2 > 0


def feed(learner: Learner, state, stream) -> list:
    """Feed rows as LearnerFunction does; returns what each row published: (prediction, envelope's metadata)."""
    out = []
    for end, x, y in stream:
        step = learner.process(state, x, y, window_end_ms=end)
        envelope = None
        if step.rollback_due:
            envelope = learner.rollback("k", state, end, end)
        elif learner.snapshot_due(state):
            envelope = learner.publish("k", state, end, end)
        meta = decode(envelope, KEYRING).metadata() if envelope else None
        out.append((step.prediction.prediction, meta))
    return out


def trained_state():
    learner = guarded_learner()
    state = learner.new_state()
    feed(learner, state, rows(1, 60))
    return learner, state


def test_the_fixture_names_key_state_by_its_path_before_the_split():
    """What makes the test below worth having: the bytes name udfs.learner.KeyState and the guards' classes."""
    with open(FIXTURE, "rb") as f:
        stored = f.read()
    names = {arg for op, arg, _ in pickletools.genops(stored) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert {
        "udfs.learner",
        "KeyState",
        "udfs.gate",
        "PublishedVersion",
        "udfs.challenger",
        "Duel",
        "udfs.drift",
        "DriftWatch",
        "udfs.quality",
        "FeatureStats",
    } <= names


def test_a_state_pickled_before_the_split_restores_and_carries_on_as_a_new_one():
    with open(FIXTURE, "rb") as f:
        # A file committed with the tests, written by this file's own code (above): trusted bytes.
        restored = migrate(pickle.loads(f.read()))
    learner, built = trained_state()
    assert isinstance(restored, KeyState)
    for field in (
        "n_learned",
        "model_version",
        "published_version",
        "held_version",
        "last_window_end_ms",
        "prior",
        "generation",
        "schema_version",
    ):
        assert getattr(restored, field) == getattr(built, field), field
    assert restored.n_learned == 60 and restored.gate.published is not None and restored.gate.previous is not None
    assert type(restored.drift) is type(built.drift) and type(restored.duel) is type(built.duel)
    assert restored.metric.get() == built.metric.get()
    # The same predictions, updates and published envelopes from here on, guards included.
    more = list(rows(2, 40, start=60))
    expected = feed(learner, built, more)
    assert feed(learner, restored, more) == expected
    assert any(meta for _, meta in expected)


def test_a_state_pickled_now_restores_under_the_name_older_releases_read():
    """A savepoint taken by this code restores in the release before the split too (a deploy rolled
    back), and in this code."""
    _, state = trained_state()
    stored = pickle.dumps(state)
    names = [arg for op, arg, _ in pickletools.genops(stored) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    assert names[:2] == ["udfs.learner", "KeyState"]
    assert isinstance(migrate(pickle.loads(stored)), KeyState)


if __name__ == "__main__":
    _, state = trained_state()
    with open(sys.argv[1], "wb") as f:
        f.write(pickle.dumps(state))  # what PyFlink's PICKLED_BYTE_ARRAY state holds
