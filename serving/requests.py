"""Answers to prediction requests, as (HTTP status, JSON body), with no HTTP in them.

>>> from river import linear_model
>>> from serving.registry import ModelRegistry
>>> check_features({"x1": 1.0, "x2": "a"}, ("x1", "x2"))
Traceback (most recent call last):
...
serving.requests.BadRequest: feature 'x2' must be a number, got str
"""

from __future__ import annotations

import math
import time

from serving.registry import ModelRegistry
from udfs.learner import as_number
from udfs.model_spec import is_classifier


class BadRequest(ValueError):
    status = 400


class NotFound(LookupError):
    status = 404


def check_features(features, names) -> dict:
    """The request's features in the model's order; every name present and a finite number."""
    if not isinstance(features, dict):
        raise BadRequest(f"'features' must be an object, got {type(features).__name__}")
    checked = {}
    for name in names:
        if name not in features:
            raise BadRequest(f"missing feature '{name}'")
        value = features[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"feature '{name}' must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise BadRequest(f"feature '{name}' must be finite, got {value}")
        checked[name] = float(value)
    return checked


def predict(registry: ModelRegistry, request, feature_names, fallback_key: str | None = None) -> dict:
    """One prediction: the key's newest model (or the fallback model) on the given features."""
    if not isinstance(request, dict):
        raise BadRequest(f"a request must be an object, got {type(request).__name__}")
    key = request.get("key")
    if not isinstance(key, str) or not key:
        raise BadRequest("missing 'key' (a non-empty string)")
    x = check_features(request.get("features"), feature_names)
    served = registry.get(key)
    used_fallback = False
    if served is None and fallback_key is not None:
        served, used_fallback = registry.get(fallback_key), True
    if served is None:
        raise NotFound(f"no model for key '{key}'" + (f" and none for the fallback key '{fallback_key}'" if used_fallback else ""))
    model = served.model
    y_pred = model.predict_proba_one(x) if is_classifier(model) else model.predict_one(x)
    return {
        "key": key,
        "prediction": as_number(y_pred),
        "model_key": served.snapshot.key,
        "model_version": served.snapshot.model_version,
        "model_age_s": round(time.time() - served.snapshot.window_end_ms / 1000, 3),
        "fallback": used_fallback,
    }


def predict_batch(registry: ModelRegistry, body, feature_names, fallback_key: str | None = None) -> dict:
    """Many predictions; a bad item gets its own error and status, the others are answered."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise BadRequest("a batch must be an object with a 'requests' list")
    results = []
    for item in body["requests"]:
        try:
            results.append(predict(registry, item, feature_names, fallback_key))
        except (BadRequest, NotFound) as e:
            results.append({"error": str(e), "status": e.status})
    return {"results": results}
