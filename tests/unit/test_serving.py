"""Serving without Kafka: the registry's swap rule, request checks and answers, metrics text."""

import dataclasses

import pytest
from river import datasets, linear_model, preprocessing

from serving.metrics import Counter, Histogram, render
from serving.registry import ModelRegistry
from serving.requests import BadRequest, NotFound, check_features, predict, predict_batch
from udfs.envelope import Snapshot, dump_model

FEATURES = ("x1", "x2")


def trained(n):
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1": x["1"], "x2": x["2"]}, y)
    return model


def snapshot(key, version, model):
    return Snapshot(key=key, model_version=version, n_learned=version, metric_name="LogLoss", metric_value=0.6,
                    window_end_ms=1_000, watermark_ms=999, emitted_at_ms=1_100, feature_schema_hash="h",
                    payload=dump_model(model))


def test_only_a_newer_version_replaces_the_served_model():
    registry = ModelRegistry()
    assert registry.offer(snapshot("k", 5, trained(10)), applied_at=1.0)
    assert not registry.offer(snapshot("k", 5, trained(20)), applied_at=2.0)  # a duplicate
    assert not registry.offer(snapshot("k", 3, trained(20)), applied_at=2.0)  # reordered, older
    assert registry.offer(snapshot("k", 6, trained(20)), applied_at=3.0)
    assert registry.versions() == {"k": 6} and registry.get("k").applied_at == 3.0


def test_predict_answers_with_the_served_model():
    model = trained(50)
    registry = ModelRegistry()
    registry.offer(snapshot("k", 7, model), applied_at=1.0)
    answer = predict(registry, {"key": "k", "features": {"x1": 0.5, "x2": -1}}, FEATURES)
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
    registry = ModelRegistry()
    registry.offer(snapshot("k", 1, trained(5)), applied_at=1.0)
    with pytest.raises(BadRequest, match=message):
        predict(registry, request_body, FEATURES)


def test_unknown_key_is_404_unless_a_fallback_model_answers():
    registry = ModelRegistry()
    registry.offer(snapshot("global", 3, trained(30)), applied_at=1.0)
    request = {"key": "new-book", "features": {"x1": 0.0, "x2": 0.0}}
    with pytest.raises(NotFound, match="no model for key 'new-book'"):
        predict(registry, request, FEATURES)
    answer = predict(registry, request, FEATURES, fallback_key="global")
    assert (answer["model_key"], answer["fallback"]) == ("global", True)


def test_batch_answers_each_item_on_its_own():
    registry = ModelRegistry()
    registry.offer(snapshot("k", 1, trained(5)), applied_at=1.0)
    results = predict_batch(registry, {"requests": [
        {"key": "k", "features": {"x1": 1, "x2": 2}},
        {"key": "other", "features": {"x1": 1, "x2": 2}},
        {"key": "k", "features": {"x1": 1}},
    ]}, FEATURES)["results"]
    assert [r.get("status", 200) for r in results] == [200, 404, 400]
    with pytest.raises(BadRequest, match="'requests' list"):
        predict_batch(registry, {"requests": "all"}, FEATURES)


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
