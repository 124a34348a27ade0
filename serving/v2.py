"""The Open Inference Protocol (KServe V2) over the replica's models, with no HTTP in it: one model per
key, its inputs the feature columns as named tensors of shape [N] (N rows), typed by the feature types
the serving model's envelope names (udfs/feature_types.py): a number FP64 (FP32, INT64 and INT32 taken
too), an integer INT64 (or INT32), a string BYTES (the strings themselves in `data`), a boolean BOOL.
Its outputs are what `/predict` answers (udfs/prediction.py): `prediction` (FP64 [N]) and, for a
classifier, `predicted` (BYTES [N], the class names) and `probabilities` (FP64 [N, C], row-major, the
C classes named in the tensor's `parameters.classes`; 0.0 for a class a row's answer does not name).

>>> from river import linear_model
>>> from serving.feature_store import FeatureStore
>>> from serving.registry import ModelRegistry
>>> from udfs.envelope import Snapshot, dump_model
>>> serving = Serving(ModelRegistry(), FeatureStore(), ("x1", "genre"))
>>> _ = serving.registry.offer(Snapshot(key="k", model_version=7, n_learned=1, metric_name="LogLoss",
...     metric_value=0.5, window_end_ms=0, watermark_ms=0, emitted_at_ms=0, feature_schema_hash="h",
...     payload=dump_model(linear_model.LogisticRegression()), feature_types={"x1": "number", "genre": "string"}),
...     applied_at=1.0)
>>> [(i["name"], i["datatype"]) for i in metadata(serving, "k")["inputs"]]
[('x1', 'FP64'), ('genre', 'BYTES')]
>>> answer = infer(serving, "k", {"inputs": [{"name": "x1", "shape": [2], "datatype": "FP64", "data": [0, 1]},
...                                          {"name": "genre", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]})
>>> for output in answer["outputs"]:  # doctest: +NORMALIZE_WHITESPACE
...     print(output)
{'name': 'prediction', 'shape': [2], 'datatype': 'FP64', 'data': [0.5, 0.5]}
{'name': 'predicted', 'shape': [2], 'datatype': 'BYTES', 'data': ['false', 'false']}
{'name': 'probabilities', 'shape': [2, 2], 'datatype': 'FP64', 'data': [0.5, 0.5, 0.5, 0.5],
 'parameters': {'classes': ['false', 'true']}}
>>> infer(serving, "k", {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP64", "data": [1]},
...                                 {"name": "genre", "shape": [1], "datatype": "FP64", "data": [2]}]})
Traceback (most recent call last):
...
serving.requests.BadRequest: input 'genre': datatype must be BYTES (feature 'genre' is a string), got 'FP64'
"""

from __future__ import annotations

import time

from serving.requests import NO_TYPES, BadRequest, Serving, check_features, served_model
from udfs.feature_types import BOOLEAN, INTEGER, NUMBER, STRING
from udfs.prediction import predict

PLATFORM = "river"
# The tensor datatypes each feature type takes, the first the one metadata names.
DATATYPES = {
    NUMBER: ("FP64", "FP32", "INT64", "INT32"),
    INTEGER: ("INT64", "INT32"),
    STRING: ("BYTES",),
    BOOLEAN: ("BOOL",),
}


def _tensor_spec(name: str, datatype: str = "FP64", shape=(-1,)) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape)}


def _output_specs(served) -> list:
    if not served.kind.classifier:
        return [_tensor_spec("prediction")]
    return [
        _tensor_spec("prediction"),
        _tensor_spec("predicted", "BYTES"),
        _tensor_spec("probabilities", shape=(-1, -1)),
    ]


def _types(served) -> dict:
    return served.snapshot.feature_types or NO_TYPES


def metadata(serving: Serving, key: str) -> dict:
    """`GET /v2/models/{key}`: the model answering for `key`, the versions held of it, its tensors."""
    served, _ = served_model(serving, key)
    versions = serving.registry.describe(served.snapshot.key, time.time())["history_versions"]
    types = _types(served)
    return {
        "name": key,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [_tensor_spec(name, DATATYPES[types.get(name, NUMBER)][0]) for name in serving.feature_names],
        "outputs": _output_specs(served),
    }


def ready(serving: Serving, key: str) -> dict:
    """`GET /v2/models/{key}/ready`: a model answers for `key` (else NotFound, a 404)."""
    served_model(serving, key)
    return {"name": key, "ready": True}


def _input_rows(tensor) -> tuple[str, list]:
    """One input tensor's name and values, its shape checked (its datatype is checked against the model's
    feature types, by `_check_datatype`)."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise BadRequest("every input must be an object with a 'name'")
    name, shape, data = tensor["name"], tensor.get("shape"), tensor.get("data")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int and shape[0] >= 0):
        raise BadRequest(f"input '{name}': shape must be [N], N rows, got {shape!r}")
    if not isinstance(data, list) or len(data) != shape[0]:
        got = f"{len(data)} values" if isinstance(data, list) else type(data).__name__
        raise BadRequest(f"input '{name}': data must be a list of {shape[0]} values (its shape), got {got}")
    return name, data


def _check_datatype(tensor: dict, kind: str) -> None:
    name, datatype, allowed = tensor["name"], tensor.get("datatype"), DATATYPES[kind]
    if datatype not in allowed:
        needs = f"one of {', '.join(allowed)}" if len(allowed) > 1 else allowed[0]
        article = "an" if kind == INTEGER else "a"
        raise BadRequest(
            f"input '{name}': datatype must be {needs} (feature '{name}' is {article} {kind}), got {datatype!r}"
        )


def _outputs(answers: list, classifier: bool) -> list:
    """The output tensors of the rows' answers (udfs.prediction.Published), as `/predict` gives them."""
    n = len(answers)
    outputs = [{"name": "prediction", "shape": [n], "datatype": "FP64", "data": [a.prediction for a in answers]}]
    if not classifier:
        return outputs
    classes = sorted({c for a in answers for c in (a.probabilities or ())})
    probabilities = [(a.probabilities or {}).get(c, 0.0) for a in answers for c in classes]
    return outputs + [
        {"name": "predicted", "shape": [n], "datatype": "BYTES", "data": [a.predicted for a in answers]},
        {
            "name": "probabilities",
            "shape": [n, len(classes)],
            "datatype": "FP64",
            "data": probabilities,
            "parameters": {"classes": classes},
        },
    ]


def infer(serving: Serving, key: str, body) -> dict:
    """`POST /v2/models/{key}/infer`: one prediction per row of the named input tensors."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest("an inference request must be an object with an 'inputs' list")
    columns, tensors = {}, {}
    for tensor in body["inputs"]:
        name, data = _input_rows(tensor)
        tensors[name] = tensor
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
        raise BadRequest(f"inputs must have the same shape, got { ({n: [len(d)] for n, d in columns.items()}) }")
    served, _ = served_model(serving, key)
    types = _types(served)
    for name in serving.feature_names:
        _check_datatype(tensors[name], types.get(name, NUMBER))
    answers = []
    for i in range(lengths.pop()):
        try:
            x = check_features({name: data[i] for name, data in columns.items()}, serving.feature_names, types)
        except BadRequest as e:
            raise BadRequest(f"row {i}: {e}") from None
        answers.append(predict(served.model, x, served.kind))
    answer = {
        "model_name": key,
        "model_version": str(served.snapshot.model_version),
        "outputs": _outputs(answers, served.kind.classifier),
    }
    if "id" in body:  # the protocol echoes a request's id
        answer = {"id": body["id"], **answer}
    return answer
