"""Model safety in a replica, without Kafka: the versions held per key, rollbacks from them or from
the record's payload, and shadow-scoring the challenger next to the served model."""

import dataclasses

import pytest
from river import preprocessing

from serving.feature_store import FeatureStore
from serving.registry import ModelRegistry
from serving.requests import Serving, predict, predict_batch, recommend
from tests.unit.models import snapshot, trained
from udfs.envelope import EnvelopeError, dump_model
from udfs.feature_records import FeatureRow

FEATURES = ("x1", "x2")
X = {"x1": 0.4, "x2": -0.7}


def rollback(version, from_version, to_version, payload, key="k"):
    """A rollback record as the job writes it: a new version, the good model's bytes again."""
    return snapshot(
        version=version,
        key=key,
        payload=payload,
        extra={
            "rollback": {"from_version": from_version, "to_version": to_version, "reason": f"v{from_version} degraded"}
        },
    )


def test_each_key_holds_its_last_versions_and_drops_older_ones():
    registry = ModelRegistry(history_per_key=3)
    for version in range(1, 6):
        registry.offer(snapshot(version=version), applied_at=float(version))
    registry.offer(snapshot(version=1, key="other"), applied_at=9.0)
    assert registry.describe("k", now=10.0)["history_versions"] == [3, 4, 5]
    assert registry.held("k", 2) is None and registry.held("k", 3).snapshot.model_version == 3
    assert registry.describe("other", now=10.0)["history_versions"] == [1]
    assert registry.versions() == {"k": 5, "other": 1} and registry.describe("nope", now=10.0) is None


def test_held_versions_keep_neither_model_bytes_nor_challenger_bytes():
    registry = ModelRegistry()
    registry.offer(snapshot(version=1, challenger_payload=dump_model(trained(5))), applied_at=1.0)
    held = registry.held("k", 1).snapshot
    assert (held.payload, held.challenger_payload) == (b"", b"")


def test_a_rollback_to_a_held_version_serves_that_model_object_again_without_unpickling():
    registry = ModelRegistry(history_per_key=3)
    registry.offer(snapshot(version=1), applied_at=1.0)
    good = registry.get("k").model
    registry.offer(snapshot(version=2), applied_at=2.0)
    # A payload that would not load proves the held model is used.
    served = registry.offer(rollback(3, 2, 1, payload=b"not a pickle"), applied_at=3.0)
    assert served.model is good and registry.get("k") is served
    assert served.rollback.source == "history"
    described = registry.describe("k", now=4.0)
    assert described["model_version"] == 3 and described["history_versions"] == [1, 2, 3]
    assert described["rollback"] == {
        "version": 3,
        "from_version": 2,
        "to_version": 1,
        "reason": "v2 degraded",
        "source": "history",
        "applied_at": 3.0,
    }
    # The degraded version, delivered again, stays out: versions only go forward.
    assert registry.offer(snapshot(version=2), applied_at=5.0) is None and registry.get("k") is served


def test_a_rollback_to_a_version_no_longer_held_loads_the_records_payload():
    good = trained(10)
    registry = ModelRegistry(history_per_key=2)
    for version in (1, 2, 3):
        registry.offer(snapshot(version=version, model=good if version == 1 else None), applied_at=float(version))
    served = registry.offer(rollback(4, 3, 1, payload=dump_model(good)), applied_at=4.0)
    assert served.rollback.source == "payload" and registry.describe("k", now=5.0)["history_versions"] == [3, 4]
    assert served.model.predict_proba_one(X) == good.predict_proba_one(X)


def test_a_replica_that_never_served_the_key_takes_the_rollback_from_the_payload():
    good = trained(30)
    served = ModelRegistry().offer(rollback(7, 6, 5, payload=dump_model(good)), applied_at=1.0)
    assert (served.snapshot.model_version, served.rollback.source) == (7, "payload")
    assert served.model.predict_proba_one(X) == good.predict_proba_one(X)


def test_a_rollback_whose_payload_does_not_load_leaves_the_served_model():
    registry = ModelRegistry(history_per_key=2)
    for version in (1, 2, 3):
        registry.offer(snapshot(version=version), applied_at=float(version))
    served = registry.get("k")
    with pytest.raises(EnvelopeError, match="model payload does not load"):
        registry.offer(rollback(4, 3, 1, payload=b"not a pickle"), applied_at=4.0)
    assert registry.get("k") is served and registry.describe("k", now=5.0)["history_versions"] == [2, 3]


def test_the_last_rollback_stays_shown_on_later_versions():
    registry = ModelRegistry()
    registry.offer(snapshot(version=1), applied_at=1.0)
    registry.offer(snapshot(version=2), applied_at=2.0)
    registry.offer(rollback(3, 2, 1, payload=b""), applied_at=3.0)
    registry.offer(snapshot(version=4), applied_at=4.0)
    described = registry.describe("k", now=5.0)
    assert (described["model_version"], described["rollback"]["version"], described["rollback"]["to_version"]) == (
        4,
        3,
        1,
    )


def test_describe_shows_the_safety_facts_the_job_published():
    extra = {
        "drift": {"count": 2, "last_window_end_ms": 900, "last_action": "reset"},
        "held_back": 4,
        "prior": "global",
        "champion": "challenger",
        "challenger": {"metric_value": 0.3, "role": "model"},
    }
    registry = ModelRegistry()
    registry.offer(snapshot(version=1, extra=extra), applied_at=1.0)
    described = registry.describe("k", now=2.0)
    assert {name: described[name] for name in ("drift", "held_back", "prior", "champion")} == {
        name: extra[name] for name in ("drift", "held_back", "prior", "champion")
    }
    assert described["challenger"] == {"metric_value": 0.3, "role": "model", "shadow": False}
    plain = ModelRegistry()
    plain.offer(snapshot(version=1), applied_at=1.0)
    assert [plain.describe("k", now=2.0)[name] for name in ("rollback", "drift", "held_back", "challenger")] == [
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize("history_per_key", [0, -1, 2.5, True, "3"])
def test_history_per_key_must_be_a_whole_number_of_at_least_one(history_per_key):
    with pytest.raises(ValueError, match="history_per_key must be a whole number of at least 1"):
        ModelRegistry(history_per_key=history_per_key)


def with_challenger(version, champion, challenger, key="k"):
    return snapshot(
        version=version,
        model=champion,
        key=key,
        challenger_payload=dump_model(challenger),
        extra={"champion": "model", "challenger": {"metric_value": 0.4, "role": "challenger"}},
    )


def test_without_shadow_scoring_the_challenger_is_not_unpickled_or_kept():
    serving = Serving(ModelRegistry(shadow_challenger=False), FeatureStore(), FEATURES)
    # A challenger payload that would not load proves it is not unpickled.
    served = serving.registry.offer(snapshot(version=1, challenger_payload=b"not a pickle"), applied_at=1.0)
    assert served.shadow is None
    assert "shadow" not in predict(serving, {"key": "k", "features": X})


def test_shadow_scoring_answers_with_the_champion_and_adds_the_challengers_prediction():
    champion, challenger = trained(20), trained(200)
    serving = Serving(ModelRegistry(shadow_challenger=True), FeatureStore(), FEATURES)
    serving.registry.offer(with_challenger(1, champion, challenger), applied_at=1.0)
    answer = predict(serving, {"key": "k", "features": X})
    assert answer["prediction"] == champion.predict_proba_one(X)[True]
    shadow = challenger.predict_proba_one(X)
    assert answer["shadow"] == {
        "prediction": shadow[True],
        "predicted": "true" if shadow[True] > shadow[False] else "false",
        "probabilities": {"true": shadow[True], "false": shadow[False]},
        "role": "challenger",
    }
    assert answer["prediction"] != answer["shadow"]["prediction"]
    results = predict_batch(serving, {"requests": [{"key": "k", "features": X}, {"key": "nope", "features": X}]})
    assert results["results"][0]["shadow"] == answer["shadow"] and "shadow" not in results["results"][1]
    assert serving.registry.describe("k", now=2.0)["challenger"]["shadow"] is True


def test_a_snapshot_without_a_challenger_is_answered_without_a_shadow():
    serving = Serving(ModelRegistry(shadow_challenger=True), FeatureStore(), FEATURES)
    serving.registry.offer(snapshot(version=1), applied_at=1.0)
    assert "shadow" not in predict(serving, {"key": "k", "features": X})


def test_a_failing_challenger_is_reported_in_its_place_and_the_champion_still_answers():
    champion = trained(20)
    serving = Serving(ModelRegistry(shadow_challenger=True), FeatureStore(), FEATURES)
    serving.registry.offer(with_challenger(1, champion, preprocessing.StandardScaler()), applied_at=1.0)
    answer = predict(serving, {"key": "k", "features": X})
    assert answer["prediction"] == champion.predict_proba_one(X)[True]
    assert answer["shadow"]["error"].startswith("AttributeError") and answer["shadow"]["role"] == "challenger"


def test_a_challenger_payload_that_does_not_load_refuses_the_snapshot_when_shadow_scoring():
    registry = ModelRegistry(shadow_challenger=True)
    with pytest.raises(EnvelopeError, match="challenger payload does not load"):
        registry.offer(snapshot(version=1, challenger_payload=b"not a pickle"), applied_at=1.0)
    assert registry.get("k") is None


def test_a_rollback_to_a_held_version_shadows_the_records_challenger():
    first, latest = trained(300), trained(400)
    registry = ModelRegistry(shadow_challenger=True)
    registry.offer(with_challenger(1, trained(10), first), applied_at=1.0)
    registry.offer(with_challenger(2, trained(20), first), applied_at=2.0)
    record = dataclasses.replace(rollback(3, 2, 1, payload=b""), challenger_payload=dump_model(latest))
    served = registry.offer(record, applied_at=3.0)
    assert served.rollback.source == "history"
    assert served.shadow.predict_proba_one(X) == latest.predict_proba_one(X)


def test_recommend_ranks_by_the_champion_only():
    champion, challenger = trained(20), trained(200)
    serving = Serving(ModelRegistry(shadow_challenger=True), FeatureStore(), FEATURES)
    serving.registry.offer(with_challenger(1, champion, challenger), applied_at=1.0)
    serving.features.offer(FeatureRow("k", 1_000, "h", X), received_at=1.0)
    ranking = recommend(serving, {"n": 1})["ranking"]
    assert ranking == [{"key": "k", "score": champion.predict_proba_one(X)[True], "model_version": 1}]
