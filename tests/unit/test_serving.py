"""Serving without Kafka: the registry's swap rule, request checks and answers, metrics text."""

import dataclasses

import pytest
from river import linear_model, tree

from serving.feature_store import FeatureStore
from serving.metrics import Counter, Histogram, render
from serving.registry import ModelRegistry
from serving.requests import BadRequest, NotFound, Serving, check_features, predict, predict_batch, recommend
from tests.unit.models import snapshot, trained
from udfs.feature_records import FeatureRow

FEATURES = ("x1", "x2")


def serving_with(*snapshots, fallback_key=None, rows=(), max_feature_age_s=float("inf")):
    serving = Serving(ModelRegistry(), FeatureStore(), FEATURES, fallback_key, max_feature_age_s)
    for s in snapshots:
        serving.registry.offer(s, applied_at=1.0)
    for row in rows:
        serving.features.offer(row, received_at=1.0)
    return serving


def test_only_a_newer_version_replaces_the_served_model():
    registry = ModelRegistry()
    assert registry.offer(snapshot("k", 5, trained(10)), applied_at=1.0)
    assert not registry.offer(snapshot("k", 5, trained(20)), applied_at=2.0)  # a duplicate
    assert not registry.offer(snapshot("k", 3, trained(20)), applied_at=2.0)  # reordered, older
    assert registry.offer(snapshot("k", 6, trained(20)), applied_at=3.0)
    assert registry.versions() == {"k": 6} and registry.get("k").applied_at == 3.0


def test_predict_answers_with_the_served_model():
    model = trained(50)
    serving = serving_with(snapshot("k", 7, model))
    answer = predict(serving, {"key": "k", "features": {"x1": 0.5, "x2": -1}})
    assert answer["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": -1.0})[True]
    assert (answer["model_version"], answer["fallback"]) == (7, False)


@pytest.mark.parametrize("request_body, message", [
    ({"features": {"x1": 1, "x2": 2}}, "missing 'key'"),
    ({"key": "k", "features": {"x1": 1}}, "missing feature 'x2'"),
    ({"key": "k", "features": {"x1": 1, "x2": "2"}}, "feature 'x2' must be a number, got str"),
    ({"key": "k", "features": {"x1": True, "x2": 2}}, "feature 'x1' must be a number, got bool"),
    ({"key": "k", "features": {"x1": float("nan"), "x2": 2}}, "feature 'x1' must be finite"),
    ({"key": "k", "features": [1, 2]}, "'features' must be an object"),
    ([1], "a request must be an object"),
])
def test_bad_requests_name_the_field(request_body, message):
    with pytest.raises(BadRequest, match=message):
        predict(serving_with(snapshot("k", 1, trained(5))), request_body)


def test_unknown_key_is_404_unless_a_fallback_model_answers():
    request = {"key": "new-book", "features": {"x1": 0.0, "x2": 0.0}}
    with pytest.raises(NotFound, match="no model for key 'new-book'"):
        predict(serving_with(snapshot("global", 3, trained(30))), request)
    answer = predict(serving_with(snapshot("global", 3, trained(30)), fallback_key="global"), request)
    assert (answer["model_key"], answer["fallback"]) == ("global", True)


def test_batch_answers_each_item_on_its_own():
    serving = serving_with(snapshot("k", 1, trained(5)))
    results = predict_batch(serving, {"requests": [
        {"key": "k", "features": {"x1": 1, "x2": 2}},
        {"key": "other", "features": {"x1": 1, "x2": 2}},
        {"key": "k", "features": {"x1": 1}},
    ]})["results"]
    assert [r.get("status", 200) for r in results] == [200, 404, 400]
    with pytest.raises(BadRequest, match="'requests' list"):
        predict_batch(serving, {"requests": "all"})


def test_a_key_alone_uses_its_stored_features_and_sent_ones_override():
    model = trained(40)
    serving = serving_with(snapshot("k", 2, model), rows=[FeatureRow("k", 5_000, "h", {"x1": 0.5, "x2": 1.5})])
    by_key = predict(serving, {"key": "k"})
    assert by_key["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": 1.5})[True]
    assert by_key["features_window_end_ms"] == 5_000
    overridden = predict(serving, {"key": "k", "features": {"x2": -3}})
    assert overridden["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": -3.0})[True]


def test_no_stored_and_no_sent_features_is_404_naming_the_key():
    with pytest.raises(NotFound, match="no features stored for key 'k' and none sent"):
        predict(serving_with(snapshot("k", 2, trained(5))), {"key": "k"})


def test_old_stored_features_are_marked_stale():
    serving = serving_with(snapshot("k", 2, trained(5)), rows=[FeatureRow("k", 1_000, "h", {"x1": 0.0, "x2": 0.0})],
                           max_feature_age_s=60)
    assert predict(serving, {"key": "k"})["features_stale"] is True


def test_a_key_without_a_row_in_the_newest_window_is_scored_on_the_empty_window_features_or_left_out():
    model = trained(80)
    rows = [FeatureRow("busy", 3_000, "h", {"x1": 1.5, "x2": -0.5}), FeatureRow("quiet", 2_000, "h", {"x1": 2.0, "x2": -1.0})]
    flagged = serving_with(snapshot("busy", 3, model), snapshot("quiet", 3, model), rows=rows)
    assert predict(flagged, {"key": "quiet"})["quiet"] is False  # until the follower has applied the newer window
    flagged.features.advance()
    answer = predict(flagged, {"key": "quiet"})
    assert (answer["quiet"], answer["features_empty_window"], answer["features_window_end_ms"]) == (True, False, 2_000)
    assert answer["prediction"] == model.predict_proba_one({"x1": 2.0, "x2": -1.0})[True]
    ranked = recommend(flagged, {"n": 5})
    assert ([r["key"] for r in ranked["ranking"]], ranked["quiet"], ranked["window_end_ms"]) == (["busy"], ["quiet"], 3_000)

    empty = dataclasses.replace(flagged, empty_window_features={"x1": 0.0, "x2": 0.0})
    answer = predict(empty, {"key": "quiet"})
    assert (answer["quiet"], answer["features_empty_window"], answer["features_window_end_ms"]) == (True, True, 3_000)
    assert answer["prediction"] == model.predict_proba_one({"x1": 0.0, "x2": 0.0})[True]
    assert predict(empty, {"key": "quiet", "features": {"x2": 1.0}})["prediction"] == \
        model.predict_proba_one({"x1": 0.0, "x2": 1.0})[True]
    ranked = recommend(empty, {"n": 5})
    assert sorted(r["key"] for r in ranked["ranking"]) == ["busy", "quiet"] and ranked["quiet"] == []


def test_check_features_keeps_the_model_order():
    assert list(check_features({"x2": 2, "x1": 1, "extra": "ignored"}, FEATURES)) == ["x1", "x2"]


def test_histogram_buckets_are_cumulative():
    h = Histogram("freshness_seconds", "Freshness.", [0.5, 1, 5])
    for value in (0.1, 0.7, 0.7, 3, 100):
        h.observe(value)
    text = render([h, Counter("c_total", "C.")])
    assert 'freshness_seconds_bucket{le="0.5"} 1' in text
    assert 'freshness_seconds_bucket{le="1.0"} 3' in text
    assert 'freshness_seconds_bucket{le="+Inf"} 5' in text
    assert "freshness_seconds_count 5" in text and "# TYPE c_total counter" in text


def test_served_model_describes_its_freshness():
    registry = ModelRegistry()
    registry.offer(dataclasses.replace(snapshot("k", 2, trained(5)), window_end_ms=10_000), applied_at=10.5)
    description = registry.get("k").describe(now=12.0)
    assert (description["freshness_s"], description["model_age_s"], description["model_version"]) == (0.5, 2.0, 2)


def test_recommend_ranks_keys_by_prediction_on_their_stored_features():
    hot, cold = trained(80), trained(80)
    serving = serving_with(snapshot("hot", 3, hot), snapshot("cold", 4, cold), snapshot("no-features", 1, hot),
                           rows=[FeatureRow("hot", 1, "h", {"x1": 1.5, "x2": -0.5}), FeatureRow("cold", 1, "h", {"x1": -1.0, "x2": 1.0})])
    ranking = recommend(serving, {"user": "u1", "n": 2})
    scores = {k: predict(serving, {"key": k})["prediction"] for k in ("hot", "cold")}
    assert [item["key"] for item in ranking["ranking"]] == sorted(scores, key=scores.get, reverse=True)
    assert ranking["unscored"] == ["no-features"]
    with pytest.raises(BadRequest, match="'n' must be a whole number"):
        recommend(serving, {"n": 0})


def topic_tree(science_share: float):
    """A Hoeffding tree that has seen science, fiction and history with about these shares of science."""
    model = tree.HoeffdingTreeClassifier()
    for i in range(60):
        label = "science" if i % 100 < science_share * 100 else ("fiction", "history")[i % 2]
        model.learn_one({"x1": 0.1 * (i % 7), "x2": 1.0}, label)
    return model


def test_a_multiclass_model_answers_its_class_and_probabilities_and_recommend_ranks_by_a_named_class():
    rows = [FeatureRow(k, 1, "h", {"x1": 0.3, "x2": 1.0}) for k in ("sci", "mixed", "fic")]
    models = {"sci": topic_tree(0.9), "mixed": topic_tree(0.5), "fic": topic_tree(0.1)}
    serving = serving_with(*(snapshot(k, 1, m) for k, m in models.items()), rows=rows)

    answer = predict(serving, {"key": "sci"})
    expected = models["sci"].predict_proba_one({"x1": 0.3, "x2": 1.0})
    assert answer["probabilities"] == expected and answer["predicted"] == "science"
    assert answer["prediction"] == expected["science"]  # the predicted class's probability
    ranking = recommend(serving, {"class": "science", "n": 3})["ranking"]
    assert [item["key"] for item in ranking] == ["sci", "mixed", "fic"]
    assert ranking[0]["score"] == expected["science"]
    assert [item["key"] for item in recommend(serving, {"class": "fiction"})["ranking"]][0] == "fic"
    assert recommend(serving, {"class": "poetry"})["ranking"][0]["score"] == 0.0  # a class no model has seen
    with pytest.raises(BadRequest, match="'class' must be a class name"):
        recommend(serving, {"class": 1.5})


def test_boolean_classes_are_named_as_json_spells_them_and_a_regressor_takes_no_class():
    regressor = linear_model.LinearRegression()
    regressor.learn_one({"x1": 1.0, "x2": 0.0}, 3.0)
    serving = serving_with(snapshot("b", 1, trained(50)), snapshot("r", 1, regressor),
                           rows=[FeatureRow("b", 1, "h", {"x1": 0.5, "x2": 0.5}), FeatureRow("r", 1, "h", {"x1": 1.0, "x2": 0.0})])
    binary = predict(serving, {"key": "b"})
    assert set(binary["probabilities"]) == {"true", "false"} and binary["prediction"] == binary["probabilities"]["true"]
    by_true = recommend(serving, {"class": True, "candidates": ["b"]})["ranking"][0]["score"]
    assert by_true == recommend(serving, {"class": "true", "candidates": ["b"]})["ranking"][0]["score"] == binary["prediction"]
    value = predict(serving, {"key": "r"})
    assert "predicted" not in value and value["prediction"] == regressor.predict_one({"x1": 1.0, "x2": 0.0})
    with pytest.raises(BadRequest, match="the model of key 'r' is a regressor"):
        recommend(serving, {"class": "true", "candidates": ["r"]})
