"""River models declared as data: pipeline steps resolved only inside the `river` package, never eval'd.

A step is `{"class": <class path relative to river>, "params": {...}}`. A parameter may itself be
declared that way (an optimizer, a loss, a learning-rate scheduler), or be a list of such
declarations. A class's `*args` parameter is given by its name as a list: `compose.Select` with
`{"keys": ["genre"]}`, `compose.TransformerUnion` with `{"transformers": [...]}`, `compose.Pipeline`
with `{"steps": [...]}`, so that a categorical feature can be one-hot encoded beside scaled numbers:

>>> print(build_model({"steps": [
...     {"class": "compose.TransformerUnion", "params": {"transformers": [
...         {"class": "compose.Pipeline", "params": {"steps": [
...             {"class": "compose.Select", "params": {"keys": ["genre"]}},
...             {"class": "preprocessing.OneHotEncoder"}]}},
...         {"class": "compose.Pipeline", "params": {"steps": [
...             {"class": "compose.Select", "params": {"keys": ["views"]}},
...             {"class": "preprocessing.StandardScaler"}]}}]}},
...     {"class": "linear_model.LogisticRegression"}]}))
['genre'] | OneHotEncoder + ['views'] | StandardScaler | LogisticRegression

A name resolves only by importing `river.<module>` and taking a class defined in
River from it, or as one of the project's own options in `udfs.model_options`; anything else is a
`ModelSpecError` that names the config path at fault.

>>> model = build_model({"steps": [
...     {"class": "preprocessing.StandardScaler"},
...     {"class": "linear_model.LogisticRegression", "params": {
...         "optimizer": {"class": "optim.SGD", "params": {
...             "lr": {"class": "optim.schedulers.InverseScaling", "params": {"learning_rate": 0.1}}}}}},
... ]})
>>> print(model)
StandardScaler | LogisticRegression
>>> is_classifier(model)
True
>>> build_metric({"class": "metrics.LogLoss"}, model=model)
LogLoss: 0.
>>> build_model({"steps": [{"class": "optim.SDG"}]})
Traceback (most recent call last):
    ...
udfs.model_spec.ModelSpecError: model.steps[0].class: unknown River class 'optim.SDG' (did you mean 'optim.SGD'?)

The label column's SQL type must suit the model's kind (`label_type_error`):

>>> label_type_error(model, "VARCHAR", "STRING")  # doctest: +NORMALIZE_WHITESPACE
'is of type STRING, but LogisticRegression is a binary classifier, which learns BOOLEAN labels (or 0/1 integers);
a multiclass model (tree.HoeffdingTreeClassifier, say) learns string classes'
>>> label_type_error(build_model({"steps": [{"class": "tree.HoeffdingTreeClassifier"}]}), "VARCHAR", "STRING") is None
True
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import pkgutil
import re

import river
from river import base, compose, utils
from river.metrics.base import Metric

__all__ = [
    "ModelSpecError",
    "build_detector",
    "build_metric",
    "build_model",
    "is_classifier",
    "label_type_error",
    "model_kind",
]

OPTIONS_MODULE = "udfs.model_options"

# Dotted identifiers whose every part starts with a letter: no leading dots, no private or dunder parts.
_CLASS_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\Z")
_SPEC_KEYS = ("class", "params")


class ModelSpecError(ValueError):
    """A model or metric declaration that does not resolve to River objects; says where and why."""


def build_model(spec, path: str = "model"):
    """A fresh River estimator from `{"steps": [...]}`: one step is that estimator, several a Pipeline.

    Every step but the last must be a transformer (or an anomaly filter); the last must predict.
    """
    if not isinstance(spec, dict):
        raise ModelSpecError(f"{path}: expected a mapping with 'steps', got {spec!r}")
    if unexpected := sorted(set(spec) - {"steps"}, key=str):
        keys = ", ".join(map(repr, unexpected))
        raise ModelSpecError(f"{path}: unexpected key(s) {keys}; a model has only 'steps'")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ModelSpecError(f"{path}.steps: expected a non-empty list of steps, got {steps!r}")
    built = []
    for i, step in enumerate(steps):
        step_path = f"{path}.steps[{i}]"
        estimator = _build(step, step_path, base.Estimator, "a River estimator")
        name = step["class"]
        feeds_next = isinstance(estimator, base.Transformer) or utils.inspect.isanomalyfilter(estimator)
        if i < len(steps) - 1 and not feeds_next:
            raise ModelSpecError(f"{step_path}: {name} is not a transformer; only the last step may be a model")
        if i == len(steps) - 1 and not hasattr(estimator, "predict_one"):
            raise ModelSpecError(f"{step_path}: {name} cannot predict (no predict_one); the last step must be a model")
        if i == len(steps) - 1 and not isinstance(
            utils.inspect.extract_relevant(estimator), (base.Classifier, base.Regressor)
        ):
            # A clusterer or a multi-output model: the learner gives every row one label, from one SQL column.
            raise ModelSpecError(
                f"{step_path}: {name} is neither a classifier nor a regressor; the last step must "
                "learn one label per row"
            )
        built.append(estimator)
    return built[0] if len(built) == 1 else compose.Pipeline(*built)


def build_metric(spec, path: str = "metric", model=None):
    """A fresh River metric from `{"class": "metrics.Accuracy"}`; checked against `model` when given."""
    metric = _build(spec, path, Metric, "a River metric (river.metrics.base.Metric)")
    if model is not None and not metric.works_with(model):
        final = type(utils.inspect.extract_relevant(model)).__name__
        raise ModelSpecError(f"{path}.class: {spec['class']} does not work with {final}")
    return metric


def build_detector(spec, path: str):
    """A fresh River drift detector from `{"class": "drift.ADWIN", "params": {...}}`."""
    return _build(spec, path, base.DriftDetector, "a River drift detector (river.base.DriftDetector)")


def is_classifier(model) -> bool:
    """Whether the final estimator (the last step of a pipeline) is a `river.base.Classifier`.

    A classifier is asked for `predict_proba_one`, anything else for `predict_one`.
    """
    return utils.inspect.isclassifier(model)


# SQL type roots (Flink's LogicalTypeRoot names) of the labels each kind of model learns.
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")
_LABEL_TYPES = {
    "regressor": _INTEGER_TYPES + ("FLOAT", "DOUBLE"),
    "binary classifier": ("BOOLEAN",) + _INTEGER_TYPES,
    "multiclass classifier": ("BOOLEAN",) + _INTEGER_TYPES + ("CHAR", "VARCHAR"),
}
_WHAT_IT_LEARNS = {
    "regressor": "learns numbers (an integer type, FLOAT or DOUBLE; CAST a DECIMAL AS DOUBLE)",
    "binary classifier": "learns BOOLEAN labels (or 0/1 integers); a multiclass model "
    "(tree.HoeffdingTreeClassifier, say) learns string classes",
    "multiclass classifier": "learns classes: BOOLEAN, an integer type or a string",
}


def model_kind(model) -> str:
    """'regressor', 'binary classifier' (River's binary-only models: answers False/True) or 'multiclass classifier'."""
    if not is_classifier(model):
        return "regressor"
    return "multiclass classifier" if utils.inspect.extract_relevant(model)._multiclass else "binary classifier"


def label_type_error(model, type_root: str, type_name: str) -> str | None:
    """Why a label column of this SQL type (its `LogicalTypeRoot` name, and as the DDL spells it) does not
    suit the model, or None. A float label for a classifier, a string or a boolean for a regressor, a
    string for a binary-only model would fail on the first row, or learn nonsense."""
    kind = model_kind(model)
    if type_root in _LABEL_TYPES[kind]:
        return None
    final = type(utils.inspect.extract_relevant(model)).__name__
    return f"is of type {type_name}, but {final} is a {kind}, which {_WHAT_IT_LEARNS[kind]}"


def _build(spec, path: str, kind: type, kind_name: str):
    if not isinstance(spec, dict):
        raise ModelSpecError(f"{path}: expected a mapping like {{class: ..., params: {{...}}}}, got {spec!r}")
    if "class" not in spec:
        raise ModelSpecError(f"{path}: missing 'class' (a River class path like 'linear_model.LogisticRegression')")
    if unexpected := sorted(set(spec) - set(_SPEC_KEYS), key=str):
        keys = ", ".join(map(repr, unexpected))
        raise ModelSpecError(f"{path}: unexpected key(s) {keys}; expected 'class' and optional 'params'")
    name = spec["class"]
    cls = _resolve(name, f"{path}.class")
    if not issubclass(cls, kind):
        raise ModelSpecError(f"{path}.class: {name} is not {kind_name}")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise ModelSpecError(f"{path}.params: expected a mapping of parameter names to values, got {params!r}")
    variadic = _check_parameter_names(cls, name, params, path)
    kwargs = {key: _value(value, f"{path}.params.{key}") for key, value in params.items()}
    args = kwargs.pop(variadic, []) if variadic else []
    try:
        return cls(*args, **kwargs)
    except Exception as e:  # whatever the constructor objects to is a bad value in the config
        raise ModelSpecError(f"{path}.params: {name} rejected its parameters: {type(e).__name__}: {e}") from e


def _value(value, path: str):
    """A parameter value: nested declarations are built, lists element by element; the rest as is."""
    if isinstance(value, dict) and any(key in value for key in _SPEC_KEYS):
        return _build(value, path, object, "a class")
    if isinstance(value, list):
        return [_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, str) and "." in value and _resolvable(value):
        raise ModelSpecError(
            f"{path}: {value!r} is a string; declare the object as {{class: {value}, params: {{...}}}}"
        )
    return value


def _check_parameter_names(cls, name: str, params: dict, path: str) -> str | None:
    """Refuse a parameter the class does not take, or lacks one it needs; returns the name of its `*args`
    parameter when it has one and `params` gives it: a list, passed positionally (`compose.Select`'s
    `keys`, `compose.TransformerUnion`'s `transformers`, `compose.Pipeline`'s `steps`)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    variadic = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL and p.name in params), None)
    if variadic is not None and not isinstance(params[variadic], list):
        raise ModelSpecError(
            f"{path}.params.{variadic}: {name} takes *{variadic}: expected a list, got {params[variadic]!r}"
        )
    keywords = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    keywords += [variadic] if variadic else []
    if not any(p.kind == p.VAR_KEYWORD for p in parameters):
        for key in params:
            if key not in keywords:
                close = difflib.get_close_matches(str(key), keywords, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                takes = ", ".join(keywords) or "no parameters"
                raise ModelSpecError(f"{path}.params.{key}: {name} has no parameter {key!r} ({hint}it takes: {takes})")
    missing = [p.name for p in parameters if p.name in keywords and p.default is p.empty and p.name not in params]
    if missing:
        raise ModelSpecError(f"{path}.params: {name} needs {', '.join(map(repr, missing))}")
    return variadic


def _resolve(name, path: str, suggest: bool = True) -> type:
    """The class `river.<module>.<Class>` that `name` names, or a ModelSpecError."""

    def hint(name):
        return _suggest(name) if suggest else ""

    if not isinstance(name, str) or not _CLASS_PATH.match(name) or "__" in name or _is_test_module(name):
        raise ModelSpecError(f"{path}: {name!r} is not a River class path like 'linear_model.LogisticRegression'")
    if name.startswith(OPTIONS_MODULE + "."):
        return _project_option(name, path)
    module_name, _, attr = name.rpartition(".")
    full_module = f"river.{module_name}" if module_name else "river"
    try:
        module = importlib.import_module(full_module)
    except ImportError as e:
        missing = getattr(e, "name", None) or ""
        if full_module == missing or full_module.startswith(missing + "."):
            raise ModelSpecError(f"{path}: unknown River class {name!r}{hint(name)}") from None
        raise ModelSpecError(f"{path}: {name!r} cannot be imported: {e}") from e
    obj = getattr(module, attr, None)
    if obj is None:
        raise ModelSpecError(f"{path}: unknown River class {name!r}{hint(name)}")
    if not inspect.isclass(obj):
        what = "a module" if inspect.ismodule(obj) else f"a {type(obj).__name__}"
        raise ModelSpecError(f"{path}: {name!r} is {what}, not a class")
    if not _defined_in_river(obj):
        raise ModelSpecError(f"{path}: {name!r} is {obj.__module__}.{obj.__qualname__}, not a class defined in River")
    return obj


def _project_option(name: str, path: str) -> type:
    options = importlib.import_module(OPTIONS_MODULE)
    attr = name[len(OPTIONS_MODULE) + 1 :]
    if attr not in options.__all__:
        raise ModelSpecError(f"{path}: unknown option {name!r}; {OPTIONS_MODULE} has {', '.join(options.__all__)}")
    return getattr(options, attr)


def _resolvable(name: str) -> bool:
    try:
        _resolve(name, "", suggest=False)
    except ModelSpecError:
        return False
    return True


def _defined_in_river(cls: type) -> bool:
    return cls.__module__ == "river" or cls.__module__.startswith("river.")


def _is_test_module(name: str) -> bool:
    return any(part.startswith("test") or part == "conftest" for part in name.split(".")[:-1])


def _suggest(name: str) -> str:
    """' (did you mean ...?)' with the closest River class paths, or ''."""
    known = _known_class_paths()
    last = name.rpartition(".")[2].lower()
    same_class = [k for k in known if k.rpartition(".")[2].lower() == last]  # right class, wrong module
    scored = sorted(((difflib.SequenceMatcher(None, name, k).ratio(), k) for k in known), reverse=True)[:3]
    close = [
        k
        for ratio, k in scored
        if ratio >= max(0.75, scored[0][0] - 0.1)
        and difflib.SequenceMatcher(None, last, k.rpartition(".")[2].lower()).ratio() >= 0.5  # not just the module
    ]
    matches = list(dict.fromkeys(same_class + close))[:3]
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


@functools.cache
def _known_class_paths() -> tuple[str, ...]:
    """Every public River class path, 'linear_model.LogisticRegression' or 'optim.schedulers.Optimal'."""
    paths = set()
    for info in pkgutil.iter_modules(river.__path__):
        if not info.ispkg or info.name.startswith("_") or _is_test_module(f"{info.name}.X"):
            continue
        try:
            package = importlib.import_module(f"river.{info.name}")
        except ImportError:  # an optional dependency is missing
            continue
        exported = {id(obj) for obj in vars(package).values()}
        for attr, obj in vars(package).items():
            if attr.startswith("_"):
                continue
            if _suggestible(obj):
                paths.add(f"{info.name}.{attr}")
            elif inspect.ismodule(obj) and obj.__name__ == f"river.{info.name}.{attr}":
                paths.update(
                    f"{info.name}.{attr}.{sub}"
                    for sub, cls in vars(obj).items()
                    if not sub.startswith("_") and _suggestible(cls) and id(cls) not in exported
                )
    return tuple(sorted(paths))


def _suggestible(obj) -> bool:
    if not (inspect.isclass(obj) and _defined_in_river(obj)):
        return False
    return not inspect.isabstract(obj) and not obj.__name__.startswith("Base")
