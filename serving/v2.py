"""The Open Inference Protocol (KServe V2) over the replica's models, with no HTTP in it: one model per
key, its inputs the feature columns as named FP64 tensors of shape [N] (N rows), one output tensor.

>>> from river import linear_model
>>> from serving.feature_store import FeatureStore
>>> from serving.registry import ModelRegistry
>>> from udfs.envelope import Snapshot, dump_model
>>> serving = Serving(ModelRegistry(), FeatureStore(), ("x1", "x2"))
>>> _ = serving.registry.offer(Snapshot(key="k", model_version=7, n_learned=1, metric_name="LogLoss",
...     metric_value=0.5, window_end_ms=0, watermark_ms=0, emitted_at_ms=0, feature_schema_hash="h",
...     payload=dump_model(linear_model.LogisticRegression())), applied_at=1.0)
>>> infer(serving, "k", {"inputs": [{"name": "x1", "shape": [2], "datatype": "FP64", "data": [0, 1]},
...                                 {"name": "x2", "shape": [2], "datatype": "FP64", "data": [0, 1]}]})
{'model_name': 'k', 'model_version': '7', 'outputs': [{'name': 'prediction', 'shape': [2], 'datatype': 'FP64', 'data': [0.5, 0.5]}]}
>>> infer(serving, "k", {"inputs": [{"name": "x1", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
Traceback (most recent call last):
...
serving.requests.BadRequest: input 'x1': datatype must be one of FP64, FP32, INT64, INT32, got 'BYTES'
"""

from __future__ import annotations

import time

from serving.requests import BadRequest, Serving, check_features, served_model
from udfs.prediction import predict

NUMERIC = ("FP64", "FP32", "INT64", "INT32")
PLATFORM = "river"


def _tensor_spec(name: str) -> dict:
    return {"name": name, "datatype": "FP64", "shape": [-1]}


def metadata(serving: Serving, key: str) -> dict:
    """`GET /v2/models/{key}`: the model answering for `key`, the versions held of it, its tensors."""
    served, _ = served_model(serving, key)
    versions = serving.registry.describe(served.snapshot.key, time.time())["history_versions"]
    return {"name": key, "versions": [str(v) for v in versions], "platform": PLATFORM,
            "inputs": [_tensor_spec(name) for name in serving.feature_names], "outputs": [_tensor_spec("prediction")]}


def ready(serving: Serving, key: str) -> dict:
    """`GET /v2/models/{key}/ready`: a model answers for `key` (else NotFound, a 404)."""
    served_model(serving, key)
    return {"name": key, "ready": True}


def _input_rows(tensor) -> tuple[str, list]:
    """One input tensor's name and values, its shape and datatype checked."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise BadRequest("every input must be an object with a 'name'")
    name, shape, data = tensor["name"], tensor.get("shape"), tensor.get("data")
    if tensor.get("datatype") not in NUMERIC:
        raise BadRequest(f"input '{name}': datatype must be one of {', '.join(NUMERIC)}, got {tensor.get('datatype')!r}")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int and shape[0] >= 0):
        raise BadRequest(f"input '{name}': shape must be [N], N rows, got {shape!r}")
    if not isinstance(data, list) or len(data) != shape[0]:
        got = f"{len(data)} values" if isinstance(data, list) else type(data).__name__
        raise BadRequest(f"input '{name}': data must be a list of {shape[0]} numbers (its shape), got {got}")
    return name, data


def infer(serving: Serving, key: str, body) -> dict:
    """`POST /v2/models/{key}/infer`: one prediction per row of the named input tensors."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest("an inference request must be an object with an 'inputs' list")
    columns = {}
    for tensor in body["inputs"]:
        name, data = _input_rows(tensor)
        if name not in serving.feature_names:
            raise BadRequest(f"input '{name}' is not one of the model's inputs {list(serving.feature_names)}")
        if name in columns:
            raise BadRequest(f"input '{name}' is given twice")
        columns[name] = data
    missing = [name for name in serving.feature_names if name not in columns]
    if missing:
        raise BadRequest(f"missing input '{missing[0]}'")
    lengths = {len(data) for data in columns.values()}
    if len(lengths) > 1:
        raise BadRequest(f"inputs must have the same shape, got {({n: [len(d)] for n, d in columns.items()})}")
    served, _ = served_model(serving, key)
    predictions = []
    for i in range(lengths.pop()):
        try:
            x = check_features({name: data[i] for name, data in columns.items()}, serving.feature_names)
        except BadRequest as e:
            raise BadRequest(f"row {i}: {e}") from None
        predictions.append(predict(served.model, x, served.kind).prediction)
    answer = {"model_name": key, "model_version": str(served.snapshot.model_version),
              "outputs": [{"name": "prediction", "shape": [len(predictions)], "datatype": "FP64", "data": predictions}]}
    if "id" in body:  # the protocol echoes a request's id
        answer = {"id": body["id"], **answer}
    return answer
