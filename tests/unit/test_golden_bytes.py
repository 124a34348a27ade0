"""State and envelopes written by older releases (tests/golden, made by each release's own code with
tests/golden/make_golden.py): the current code restores every KeyState and goes on predicting and
learning exactly as that release did; it serves every signed envelope's model with the same
predictions, and refuses every unsigned one for its signature, in serving and in the learner's start
from snapshots alike."""

import dataclasses
import glob
import json
import os
import pickle

import pytest

from serving.follower import Rejected, check_snapshot
from tests.unit.models import KEYRING
from udfs.bootstrap import newest_snapshots
from udfs.envelope import FORMAT_VERSION, EnvelopeSignatureError, decode, feature_schema_hash
from udfs.learner import STATE_SCHEMA_VERSION, KeyState, Learner, LearnerSettings, migrate
from udfs.model_spec import build_model
from udfs.safe_pickle import ModelClasses

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
RELEASES = sorted(os.path.basename(path)[: -len(".json")] for path in glob.glob(os.path.join(GOLDEN, "*.json")))
CLOSE = 1e-12


def golden(label: str):
    """(what the release's code computed, its state bytes, its envelope bytes)."""
    base = os.path.join(GOLDEN, label)
    with open(base + ".json") as f, open(base + ".state", "rb") as state, open(base + ".envelope", "rb") as envelope:
        return json.load(f), state.read(), envelope.read()


def predictions(model, probes):
    return [model.predict_proba_one(x)[True] for x in probes]


def current_learner(expected) -> Learner:
    """This code's learner with the settings the release was run with (make_golden.py)."""
    return Learner(
        LearnerSettings(
            model=expected["model"],
            metric=expected["metric"],
            feature_names=tuple(expected["features"]),
            window_ms=expected["window_ms"],
            snapshot_every_n=expected["snapshot_every_n"],
            generation=1,
        ),
        KEYRING,
    )


def test_every_released_schema_and_format_has_golden_bytes():
    expected = [golden(label)[0] for label in RELEASES]
    assert {e["state_schema"] for e in expected} == set(range(1, STATE_SCHEMA_VERSION + 1))
    assert {e["envelope_format"] for e in expected} == set(range(1, FORMAT_VERSION + 1))
    # A change of schema or format adds its release's files (tests/golden/make_golden.py says how).
    assert any((e["state_schema"], e["envelope_format"]) == (STATE_SCHEMA_VERSION, FORMAT_VERSION) for e in expected)


def test_a_field_added_to_key_state_comes_with_a_new_schema_version():
    """`migrate` fills the fields of older schemas only: a field added within the current schema would be
    missing from every state restored from a release of that schema."""
    declared = {f.name for f in dataclasses.fields(KeyState)}
    for label in RELEASES:
        expected = golden(label)[0]
        if expected["state_schema"] == STATE_SCHEMA_VERSION:
            missing = declared - set(expected["state"]["fields"])
            assert not missing, f"{label} has no {sorted(missing)}: raise STATE_SCHEMA_VERSION and add a golden file"


@pytest.mark.parametrize("label", RELEASES)
def test_an_older_releases_state_restores_and_predicts_and_learns_on_identically(label):
    expected, stored, _ = golden(label)
    state = migrate(pickle.loads(stored))  # as the learner reads a key's state from Flink state
    assert isinstance(state, KeyState) and state.schema_version == STATE_SCHEMA_VERSION
    was = expected["state"]
    assert (state.n_learned, state.model_version, state.published_version, state.last_window_end_ms) == (
        was["n_learned"],
        was["model_version"],
        was["published_version"],
        was["last_window_end_ms"],
    )
    assert state.generation == expected["generation"]  # 0 before lineages (schema < 3)
    assert state.metric.get() == pytest.approx(was["metric"], abs=CLOSE, rel=0)
    assert predictions(state.model, expected["probes"]) == pytest.approx(
        expected["state_predictions"], abs=CLOSE, rel=0
    )
    # Fields added since are there with their defaults, so every code path can use them.
    assert (state.replayed_windows, state.held_version, state.drift, state.gate, state.duel, state.quality) == (
        0,
        0,
        None,
        None,
        None,
        None,
    )

    learner, after = current_learner(expected), expected["after_more_rows"]
    steps = [
        learner.process(state, row["features"], row["label"], row["window_end_ms"]) for row in expected["more_rows"]
    ]
    assert [s.prediction.prediction for s in steps] == pytest.approx(after["predictions"], abs=CLOSE, rel=0)
    assert (state.n_learned, state.model_version) == (after["n_learned"], after["model_version"])
    assert state.metric.get() == pytest.approx(after["metric"], abs=CLOSE, rel=0)
    assert predictions(state.model, expected["probes"]) == pytest.approx(after["probe_predictions"], abs=CLOSE, rel=0)
    # A window it learned before the savepoint is a replay: skipped, not learned twice.
    replay = expected["more_rows"][-1]
    assert learner.process(state, replay["features"], replay["label"], replay["window_end_ms"]).prediction is None
    assert (state.n_learned, state.replayed_windows) == (after["n_learned"], 1)
    # Its next envelope carries the state's lineage on, with the version after the release's.
    snapshot = decode(learner.publish(expected["key"], state, 0, 0), KEYRING)
    assert (snapshot.generation, snapshot.model_version) == (expected["generation"], after["model_version"])


SIGNED = [label for label in RELEASES if golden(label)[0]["signing_key_id"]]
UNSIGNED = [label for label in RELEASES if label not in SIGNED]


def test_the_golden_envelopes_are_signed_exactly_from_format_3():
    assert {golden(label)[0]["envelope_format"] for label in SIGNED} == set(range(3, FORMAT_VERSION + 1))
    assert {golden(label)[0]["envelope_format"] for label in UNSIGNED} == {1, 2}


@pytest.mark.parametrize("label", SIGNED)
def test_an_older_releases_signed_envelope_is_served_with_the_same_predictions(label):
    expected, _, envelope = golden(label)
    schema = feature_schema_hash(expected["features"])
    snapshot = check_snapshot(envelope, schema, KEYRING)  # what a replica does with the record
    assert (snapshot.key, snapshot.model_version, snapshot.n_learned, snapshot.window_end_ms) == (
        expected["key"],
        expected["envelope"]["model_version"],
        expected["state"]["n_learned"],
        expected["envelope"]["window_end_ms"],
    )
    assert (snapshot.generation, snapshot.key_id, snapshot.format_version) == (
        expected["generation"],
        expected["signing_key_id"],
        expected["envelope_format"],
    )
    assert snapshot.metric_value == pytest.approx(expected["state"]["metric"], abs=CLOSE, rel=0)
    # Feature types since format 4 (the golden model's features are numbers); none before, read as numbers.
    assert snapshot.feature_types == (
        {} if expected["envelope_format"] < 4 else {name: "number" for name in expected["features"]}
    )
    model = snapshot.model(ModelClasses.of([build_model(expected["model"])]))  # the replicas' allow-list
    assert predictions(model, expected["probes"]) == pytest.approx(
        expected["envelope"]["predictions"], abs=CLOSE, rel=0
    )
    # The learner's start from snapshots takes it too.
    assert newest_snapshots([(expected["key"], envelope)], schema, KEYRING)[expected["key"]].order == snapshot.order


@pytest.mark.parametrize("label", UNSIGNED)
def test_an_older_releases_unsigned_envelope_is_refused_for_its_signature(label, caplog):
    expected, _, envelope = golden(label)
    reason = f"unsigned envelope (format {expected['envelope_format']}, written before snapshots were signed)"
    with pytest.raises(EnvelopeSignatureError) as refused:
        decode(envelope, KEYRING)
    assert str(refused.value) == reason
    schema = feature_schema_hash(expected["features"])
    with pytest.raises(Rejected) as rejected:
        check_snapshot(envelope, schema, KEYRING)
    assert (rejected.value.reason, str(rejected.value)) == ("signature", reason)
    assert newest_snapshots([(expected["key"], envelope)], schema, KEYRING) == {}
    assert "skipped 1 snapshot record(s) whose signature does not verify" in caplog.text
