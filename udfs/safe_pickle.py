"""Model payloads unpickled through an allow-list: a pickle names the callables it calls, and only
these may be named.

A pickle is a program: unpickling calls whatever functions it names, `os.system` included. The
envelope's signature (udfs/signing.py) says who wrote a payload; this says what a payload may do
even so: call the classes the declared models' own pickles name (`ModelClasses.of`, recorded from the
models the config declares, so a project class like `udfs.model_options.InverseTimeDecay` is in it),
any class or function defined in River (a model grows tree nodes, splitters and detectors its
untrained prototype does not have), numpy's array and dtype reconstructors, and the standard
containers River uses (`STANDARD`). Everything else raises `ForbiddenClass` before it is called.

Models that only cloudpickle can carry (a lambda, a class defined in a notebook) rebuild code when
loaded, which no allow-list can check: `ModelClasses.of` refuses them unless `allow_cloudpickle`
(`snapshots.allow_cloudpickle` in the config), and with it the payloads load unrestricted, guarded by
their signature alone.

>>> import pickle, os
>>> from river import linear_model, preprocessing
>>> classes = ModelClasses.of([preprocessing.StandardScaler() | linear_model.LogisticRegression()])
>>> type(loads(pickle.dumps(linear_model.LogisticRegression()), classes)).__name__
'LogisticRegression'
>>> class Exploit:
...     def __reduce__(self):
...         return os.system, ("echo pwned",)
>>> loads(pickle.dumps(Exploit()), classes)
Traceback (most recent call last):
...
udfs.safe_pickle.ForbiddenClass: the payload names posix.system, which a model of the declared spec does not use
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import pickle

import cloudpickle

# What River's models pickle besides River itself (recorded from trained linear models, trees, forests,
# naive Bayes, neighbours and ensembles): containers, numbers, numpy arrays, random generators.
STANDARD = frozenset(
    {
        ("builtins", name)
        for name in (
            "bool",
            "bytearray",
            "bytes",
            "complex",
            "dict",
            "float",
            "frozenset",
            "int",
            "list",
            "range",
            "set",
            "slice",
            "str",
            "tuple",
        )
    }
    | {("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")}
    | {
        ("functools", "partial"),
        ("copy", "deepcopy"),
        ("random", "Random"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
    }
    | {
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")
        for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
    }
)


class ForbiddenClass(pickle.UnpicklingError):
    """A payload naming a callable outside the allow-list; nothing it names was called."""


@dataclasses.dataclass(frozen=True)
class ModelClasses:
    """What a model payload may name, beyond River and `STANDARD`: (module, name) pairs."""

    names: frozenset = frozenset()
    allow_cloudpickle: bool = False
    # (module, name) -> what it names, for names admitted before: a replica unpickles a thousand models a
    # second, each naming a dozen classes, and checking and importing them anew was a third of the work.
    found: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, models, allow_cloudpickle: bool = False, what: str = "model") -> "ModelClasses":
        """The allow-list for payloads of these models: every callable their pickles name.

        Raises ValueError for a model plain pickle cannot carry, unless `allow_cloudpickle`."""
        names = set()
        for model in models:
            try:
                data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                if not allow_cloudpickle:
                    raise ValueError(
                        f"{what} {model} can be carried only by cloudpickle ({e}), whose payloads "
                        "run code when loaded; set snapshots.allow_cloudpickle: true to accept that"
                    ) from None
                continue
            recorder = _Recorder(io.BytesIO(data))
            recorder.load()  # bytes this process just made from a model it built
            names |= recorder.names
        return cls(frozenset(names), allow_cloudpickle)

    def admits(self, module: str, name: str) -> bool:
        if (module, name) in self.names or (module, name) in STANDARD:
            return True
        return (module == "river" or module.startswith("river.")) and _defined_in_river(module, name)


def loads(data: bytes, classes: ModelClasses):
    """Unpickle a model payload, calling only what `classes` admits; raises ForbiddenClass otherwise."""
    if classes.allow_cloudpickle:
        return cloudpickle.loads(data)
    return _Restricted(io.BytesIO(data), classes).load()


class _Restricted(pickle.Unpickler):
    def __init__(self, file, classes: ModelClasses):
        super().__init__(file)
        self.classes = classes

    def find_class(self, module, name):
        found = self.classes.found.get((module, name))
        if found is None:
            if not self.classes.admits(module, name):
                raise ForbiddenClass(
                    f"the payload names {module}.{name}, which a model of the declared spec does not use"
                )
            found = self.classes.found[module, name] = super().find_class(module, name)
        return found


class _Recorder(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.names = set()

    def find_class(self, module, name):
        self.names.add((module, name))
        return super().find_class(module, name)


def _defined_in_river(module: str, name: str) -> bool:
    """Whether `module.name` is a class or function River defines (importing a River module runs only River)."""
    # Dunder attributes lead out of River (`f.__globals__`, `cls.__subclasses__`); Cython's unpicklers excepted.
    if any(
        part.startswith("__") and not part.startswith("__pyx_unpickle_")
        for part in (*module.split("."), *name.split("."))
    ):
        return False
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    if not (inspect.isclass(obj) or callable(obj)) or inspect.ismodule(obj):
        return False
    defined = getattr(obj, "__module__", None) or ""
    return defined == "river" or defined.startswith("river.")


def declared_classes(config) -> ModelClasses:
    """The allow-list for payloads of the models the config declares (`model`, and the challenger's when
    enabled), with `snapshots.allow_cloudpickle`; job and replicas both take theirs from here."""
    from udfs.model_spec import build_model  # River's modules, imported only where models are built

    allow = config.get("snapshots.allow_cloudpickle", False)
    if not isinstance(allow, bool):
        raise config.error("snapshots.allow_cloudpickle", f"must be true or false, not {allow!r}")
    specs = [("model", config["model"])]
    challenger = config.get("safety.challenger", None) or {}
    if isinstance(challenger, dict) and challenger.get("enabled") and "model" in challenger:
        specs.append(("safety.challenger.model", challenger["model"]))
    try:
        return ModelClasses.of([build_model(spec, path) for path, spec in specs], allow)
    except ValueError as e:
        if type(e) is not ValueError:  # a ModelSpecError names its own path
            raise
        raise config.error("snapshots.allow_cloudpickle", str(e)) from None
