"""Answers to prediction requests, with no HTTP in them; errors carry their HTTP status.

>>> check_features({"x1": 1.0, "x2": "a"}, ("x1", "x2"))
Traceback (most recent call last):
...
serving.requests.BadRequest: feature 'x2' must be a number, got str
>>> check_features({"genre": "fiction", "views": 3}, ("genre", "views"), {"genre": "string", "views": "number"})
{'genre': 'fiction', 'views': 3.0}
>>> check_features({"genre": 1.5, "views": 3}, ("genre", "views"), {"genre": "string", "views": "number"})
Traceback (most recent call last):
...
serving.requests.BadRequest: feature 'genre' must be a string, got float
"""

from __future__ import annotations

import dataclasses
import logging
import time

from serving.feature_store import FeatureStore
from serving.partitions import KeyPartitions, PartitionsUnknown, WrongReplica
from serving.registry import ModelRegistry
from udfs.envelope import EXTRA_CHALLENGER
from udfs.feature_types import NUMBER, FeatureTypeError
from udfs.feature_types import checked as feature_value
from udfs.prediction import class_name, kind_of, predict as model_answer

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    status = 400


class NotFound(LookupError):
    status = 404


# Envelopes before format 4 type no feature: every one a number.
NO_TYPES: dict = {}

# What a request can be refused with; each carries its HTTP status.
REQUEST_ERRORS = (BadRequest, NotFound, WrongReplica, PartitionsUnknown)


def error_body(error: Exception) -> dict:
    """A refused request's JSON answer: the reason, and where to ask instead for a key held elsewhere."""
    return {"error": str(error), **getattr(error, "fields", {})}


def check_features(features, names, types: dict = NO_TYPES) -> dict:
    """The request's features in the model's order, every name present and each of the type `types` (the
    serving model's envelope's `feature_types`) gives it: udfs/feature_types.py; a name it does not type
    (an envelope of format 3) a finite number."""
    if not isinstance(features, dict):
        raise BadRequest(f"'features' must be an object, got {type(features).__name__}")
    checked = {}
    for name in names:
        if name not in features:
            raise BadRequest(f"missing feature '{name}'")
        try:
            checked[name] = feature_value(name, features[name], types.get(name, NUMBER))
        except FeatureTypeError as e:
            raise BadRequest(str(e)) from None
    return checked


@dataclasses.dataclass
class Serving:
    """What a request is answered from: models, stored features, and the settings that apply."""

    registry: ModelRegistry
    features: FeatureStore
    feature_names: tuple
    fallback_key: str | None = None
    max_feature_age_s: float = float("inf")
    # features.empty_window_features: what a key with no row in the current window is scored on (None:
    # not declared; such a key is answered on its old row, flagged `quiet`, and left out of /recommend).
    empty_window_features: dict | None = None
    # A replica holding a subset of the partitions (serving.partitions): keys it has neither a model nor
    # features for are checked against it, and those living elsewhere answered 421 with their partition.
    partitions: KeyPartitions | None = None

    def check_held(self, key: str) -> None:
        """Raise WrongReplica when `key` lives on a partition this replica does not follow."""
        if self.partitions is not None:
            self.partitions.check(key)


def request_features(serving: Serving, key: str, sent) -> tuple[dict, dict]:
    """The features to predict with, unchecked: the key's stored row, overridden field by field by those
    sent (`check_features` checks them against the types of the model that answers)."""
    stored = serving.features.get(key)
    if sent is None and stored is None:
        serving.check_held(key)
        raise NotFound(f"no features stored for key '{key}' and none sent")
    if sent is not None and not isinstance(sent, dict):
        raise BadRequest(f"'features' must be an object, got {type(sent).__name__}")
    base, info = {}, {}
    if stored is not None:
        base, window_end_ms = stored.row.features, stored.row.window_end_ms
        quiet = serving.features.quiet(stored)
        empty = quiet and serving.empty_window_features is not None
        if empty:  # the key had no row in the current window: its features are an empty window's
            base, window_end_ms = serving.empty_window_features, serving.features.current_window_end_ms
        age = round(time.time() - window_end_ms / 1000, 3)
        info = {
            "features_window_end_ms": window_end_ms,
            "features_age_s": age,
            "features_stale": age > serving.max_feature_age_s,
            "quiet": quiet,
            "features_empty_window": empty,
        }
    return {**base, **(sent or {})}, info


def answer_fields(model, x: dict, kind) -> dict:
    """A model's answer as the predictions topic has it (udfs/prediction.py): `prediction`, and for a
    classifier `predicted` and `probabilities` too."""
    answer = model_answer(model, x, kind)
    if not kind.classifier:
        return {"prediction": answer.prediction}
    return {"prediction": answer.prediction, "predicted": answer.predicted, "probabilities": answer.probabilities}


def shadow_score(served, x: dict) -> dict:
    """The challenger's answer next to the champion's; a challenger that fails must not fail the answer."""
    role = (served.snapshot.extra.get(EXTRA_CHALLENGER) or {}).get("role")
    try:
        return {**answer_fields(served.shadow, x, kind_of(served.shadow)), "role": role}
    except Exception as e:  # noqa: BLE001 - any failure of the shadow is reported in its place
        log.warning("shadow model of key %r v%d failed: %r", served.snapshot.key, served.snapshot.model_version, e)
        return {"error": f"{type(e).__name__}: {e}", "role": role}


def served_model(serving: Serving, key: str):
    """The model that answers for `key` (its own, else the fallback key's) and whether it is the fallback's."""
    served = serving.registry.get(key)
    used_fallback = False
    if served is None:
        # A held key has its model here; only keys without one pay for working out their partition.
        serving.check_held(key)
    if served is None and serving.fallback_key is not None:
        served, used_fallback = serving.registry.get(serving.fallback_key), True
    if served is None:
        fallback = f" and none for the fallback key '{serving.fallback_key}'" if used_fallback else ""
        raise NotFound(f"no model for key '{key}'{fallback}")
    return served, used_fallback


def predict(serving: Serving, request, with_shadow: bool = True) -> dict:
    """One prediction: the key's newest model (or the fallback model) on its features, and, when the
    replica shadow-scores challengers and this version has one, the challenger's under `shadow`."""
    if not isinstance(request, dict):
        raise BadRequest(f"a request must be an object, got {type(request).__name__}")
    key = request.get("key")
    if not isinstance(key, str) or not key:
        raise BadRequest("missing 'key' (a non-empty string)")
    features, feature_info = request_features(serving, key, request.get("features"))
    served, used_fallback = served_model(serving, key)
    x = check_features(features, serving.feature_names, served.snapshot.feature_types)
    answer = {
        "key": key,
        **answer_fields(served.model, x, served.kind),
        "model_key": served.snapshot.key,
        "model_version": served.snapshot.model_version,
        "model_age_s": round(time.time() - served.snapshot.window_end_ms / 1000, 3),
        "fallback": used_fallback,
        **feature_info,
    }
    if with_shadow and served.shadow is not None:
        answer["shadow"] = shadow_score(served, x)
    return answer


def predict_batch(serving: Serving, body) -> dict:
    """Many predictions; a bad item gets its own error and status, the others are answered."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise BadRequest("a batch must be an object with a 'requests' list")
    results = []
    for item in body["requests"]:
        try:
            results.append(predict(serving, item))
        except REQUEST_ERRORS as e:
            results.append({**error_body(e), "status": e.status})
    return {"results": results}


def recommend(serving: Serving, body) -> dict:
    """The top `n` candidates (default: every key with a model) by their models' predictions on their
    latest window features: with `class`, by the probability of that class (0 for a model that has not
    seen it); without, by `prediction` (a regressor's value, a boolean classifier's probability of true).
    The ranking is the same for every user: models are per item. Keys without an answer are unscored;
    keys with no row in the current window are ranked on the empty window's features where the config
    declares them (features.empty_window_features), else left out and listed under `quiet`. On
    a replica holding a subset of the partitions, candidates living elsewhere are listed by partition
    under `elsewhere`, for the caller to rank there (README: Serving at scale)."""
    if not isinstance(body, dict):
        raise BadRequest(f"a recommend request must be an object, got {type(body).__name__}")
    n = body.get("n", 5)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        raise BadRequest(f"'n' must be a whole number from 1 to 1000, got {n!r}")
    candidates = body.get("candidates", serving.registry.keys())
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise BadRequest("'candidates' must be a list of keys")
    wanted = body.get("class")
    if wanted is not None and not isinstance(wanted, (str, bool, int)):
        raise BadRequest(f"'class' must be a class name (a string, a whole number or a boolean), got {wanted!r}")
    wanted = None if wanted is None else class_name(wanted)
    scored, unscored, quiet, elsewhere = [], [], [], {}
    for key in candidates:
        try:
            answer = predict(serving, {"key": key}, with_shadow=False)  # rankings use the champion only
        except NotFound:
            unscored.append(key)
            continue
        except WrongReplica as e:
            elsewhere.setdefault(str(e.fields["partition"]), []).append(key)
            continue
        if answer.get("quiet") and not answer["features_empty_window"]:
            quiet.append(key)  # its latest row says nothing about the current window
            continue
        if wanted is None:
            score = answer["prediction"]
        elif "probabilities" not in answer:
            raise BadRequest(f"'class' ranks by a class's probability; the model of key '{key}' is a regressor")
        else:
            probabilities = answer["probabilities"]
            score = None if probabilities is None else probabilities.get(wanted, 0.0)
        if score is None:  # a model that cannot answer yet (a tree that has seen no row)
            unscored.append(key)
            continue
        scored.append({"key": key, "score": score, "model_version": answer["model_version"]})
    scored.sort(key=lambda item: item["score"], reverse=True)
    answer = {
        "user": body.get("user"),
        "ranking": scored[:n],
        "unscored": unscored,
        "quiet": quiet,
        "window_end_ms": serving.features.current_window_end_ms,
    }
    return answer if serving.partitions is None else {**answer, "elsewhere": elsewhere}
