"""The OpenAPI 3.1 document of every endpoint a replica answers, served at `GET /openapi.json`. Written by
hand, next to no framework that could generate it; tests/unit/test_serving_asgi.py checks that it lists
exactly the endpoints of serving.routes.

>>> sorted(DOCUMENT["paths"]["/v2/models/{key}/infer"])
['post']
"""

from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "refused, with the reason")
# A feature is a number, an integer, a string or a boolean, as the serving model's envelope types it
# (udfs/feature_types.py).
_FEATURE_MAP = {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]}}
_KEY = [
    {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "the model's key (percent-encoded; may contain '/')",
    }
]
# Any request: 408 past serving.request_timeout_s, 431 over serving.max_header_bytes, 503 over
# serving.max_connections. A POST also: 413 over serving.max_body_bytes (411 chunked), 400 nested deeper
# than serving.max_json_depth, with integers longer than serving.max_json_digits, NaN/Infinity or not
# UTF-8, and 503 over serving.max_concurrent_requests. 408, 431 and 503 come from the ASGI server only.
_HEAD_LIMITS = {"408": _ERROR, "431": _ERROR}
_LIMITS = {**_HEAD_LIMITS, "400": _ERROR, "411": _ERROR, "413": _ERROR, "503": _ERROR}
# A replica holding a subset of the partitions (serving.partitions): a key living on another one.
_MISDIRECTED = {
    "421": _json(_ref("Error"), "the key lives on a partition this replica does not hold; 'partition' names it")
}


def _post(summary: str, request: dict, answer: dict, params=()) -> dict:
    return {
        "post": {
            "summary": summary,
            "parameters": list(params),
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": _json(answer, "answered"), "404": _ERROR, **_MISDIRECTED, **_LIMITS, "500": _ERROR},
        }
    }


def _get(summary: str, answer: dict, params=(), failure: str = "404", content: str = "application/json") -> dict:
    ok = (
        _json(answer, "answered")
        if content == "application/json"
        else {"description": "answered", "content": {content: {"schema": {"type": "string"}}}}
    )
    return {
        "get": {
            "summary": summary,
            "parameters": list(params),
            "responses": {
                "200": ok,
                **_HEAD_LIMITS,
                "503": _ERROR,
                **(_MISDIRECTED if params else {}),
                failure: _json(answer if failure == "503" else _ref("Error"), "no"),
            },
        }
    }


_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "partition": {"type": "integer", "description": "421: the partition the key lives on"},
            "partitions": {"type": "integer", "description": "421: the snapshot topic's partition count"},
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["key"],
        "properties": {
            "key": {"type": "string", "minLength": 1},
            "features": {
                **_FEATURE_MAP,
                "description": "each of its type in the model's feature schema (GET /v2/models/{key} "
                "names them): a finite number, a whole number, a string or a boolean; a wrong type is a 400 naming "
                "the field and the type; any not sent come from the key's latest window",
            },
        },
    },
    "Prediction": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "model_key": {"type": "string"},
            "prediction": {
                "type": ["number", "null"],
                "description": "a regressor's value; a classifier of booleans: "
                "the probability of true; of other classes: the probability of the predicted class",
            },
            "predicted": {"type": ["string", "null"], "description": "classifiers: the predicted class"},
            "probabilities": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "number"},
                "description": "classifiers: each known class's probability, by class name",
            },
            "model_version": {"type": "integer"},
            "model_age_s": {"type": "number"},
            "fallback": {"type": "boolean"},
            "features_window_end_ms": {"type": "integer"},
            "features_age_s": {"type": "number"},
            "features_stale": {"type": "boolean"},
            "quiet": {
                "type": "boolean",
                "description": "the key has no row in the newest window (its latest row is older)",
            },
            "features_empty_window": {
                "type": "boolean",
                "description": "a quiet key scored on features.empty_window_features instead of its old row",
            },
            "shadow": {"type": "object", "description": "the challenger's prediction (serving.shadow_challenger)"},
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["requests"],
        "properties": {"requests": {"type": "array", "items": _ref("PredictRequest")}},
    },
    "BatchAnswer": {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _ref("Prediction"),
                        {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                    ]
                },
            }
        },
    },
    "RecommendRequest": {
        "type": "object",
        "properties": {
            "user": {},
            "n": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
            "candidates": {"type": "array", "items": {"type": "string"}},
            "class": {
                "type": ["string", "integer", "boolean"],
                "description": "classifiers: rank by this class's probability instead of by prediction",
            },
        },
    },
    "Recommendation": {
        "type": "object",
        "properties": {
            "user": {},
            "unscored": {"type": "array", "items": {"type": "string"}},
            "quiet": {
                "type": "array",
                "items": {"type": "string"},
                "description": "keys with no row in the newest "
                "window, left out of the ranking (no features.empty_window_features declared)",
            },
            "window_end_ms": {"type": "integer", "description": "the end of the newest window with features here"},
            "elsewhere": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "with serving.partitions: candidates living on other partitions, by partition",
            },
            "ranking": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "score": {"type": "number"},
                        "model_version": {"type": "integer"},
                    },
                },
            },
        },
    },
    "Model": {
        "type": "object",
        "description": "the served version, its metric, age, rollback, drift and "
        "challenger facts and the versions held",
        "properties": {
            "key": {"type": "string"},
            "model_version": {"type": "integer"},
            "n_learned": {"type": "integer"},
            "history_versions": {"type": "array"},
        },
    },
    "Features": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "features": _FEATURE_MAP,
            "window_end_ms": {"type": "integer"},
            "age_s": {"type": "number"},
        },
    },
    "Tensor": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 1,
                "maxItems": 2,
                "description": "[N]: N rows; probabilities [N, C]",
            },
            "datatype": {
                "enum": ["FP64", "FP32", "INT64", "INT32", "BYTES", "BOOL"],
                "description": "inputs: a number feature FP64 (FP32, INT64, INT32), an integer INT64 (INT32), "
                "a string BYTES, a boolean BOOL",
            },
            "data": {"type": "array", "items": {"type": ["number", "string", "boolean", "null"]}},
            "parameters": {"type": "object", "description": "probabilities: 'classes', the class of each column"},
        },
    },
    "TensorSpec": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("Tensor"), "description": "one tensor per feature column"},
        },
    },
    "InferAnswer": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("Tensor")},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorSpec")},
            "outputs": {"type": "array", "items": _ref("TensorSpec")},
        },
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "Serving replica",
        "version": "1",
        "description": 'Per-key River models followed from the snapshot topic; errors are {"error": ...}.',
    },
    "paths": {
        "/predict": _post("One prediction", _ref("PredictRequest"), _ref("Prediction")),
        "/predict/batch": _post("Many predictions; errors per item", _ref("BatchRequest"), _ref("BatchAnswer")),
        "/recommend": _post(
            "Candidates ranked by their models' predictions", _ref("RecommendRequest"), _ref("Recommendation")
        ),
        "/healthz": _get(
            "200 while following the topics, 503 once that failed for good",
            {"type": "object", "properties": {"status": {"type": "string"}, "error": {"type": "string"}}},
            failure="503",
        ),
        "/readyz": _get(
            "200 once caught up with the snapshot topic",
            {
                "type": "object",
                "properties": {
                    "ready": {"type": "boolean"},
                    "models": {"type": "integer"},
                    "partitions": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "with serving.partitions",
                    },
                    "partition_count": {"type": ["integer", "null"]},
                },
            },
            failure="503",
        ),
        "/metrics": _get("Prometheus text", {}, failure="500", content="text/plain; version=0.0.4"),
        "/openapi.json": _get("This document", {"type": "object"}, failure="500"),
        "/models/{key}": _get("The served model of a key", _ref("Model"), _KEY),
        "/features/{key}": _get("A key's latest window features", _ref("Features"), _KEY),
        "/v2/health/live": _get(
            "Open Inference Protocol: live (as /healthz)",
            {"type": "object", "properties": {"live": {"type": "boolean"}}},
            failure="503",
        ),
        "/v2/health/ready": _get(
            "Open Inference Protocol: ready (as /readyz)",
            {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            failure="503",
        ),
        "/v2/models/{key}": _get("Open Inference Protocol: model metadata", _ref("ModelMetadata"), _KEY),
        "/v2/models/{key}/ready": _get(
            "Open Inference Protocol: a model answers for the key",
            {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
            _KEY,
        ),
        "/v2/models/{key}/infer": _post(
            "Open Inference Protocol: one prediction per row", _ref("InferRequest"), _ref("InferAnswer"), _KEY
        ),
    },
    "components": {"schemas": _SCHEMAS},
}
