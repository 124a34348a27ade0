"""Run a Flink function with the code shipped with its job, not code a TaskManager imported earlier.

In thread mode (`python.execution-mode: thread`) Python runs inside the TaskManager, in one
interpreter for its whole life: a module a first job imported stays in `sys.modules`, so a second job
with changed code (an upgrade, a fix) would run the first job's `udfs`, silently. `ShippedCode` wraps
the job's function; it is pickled by value, with the fingerprint of every project module and the
function itself as bytes, and in `open()`, before the function is unpickled, drops the project's
modules whose source differs from the fingerprint and puts the job's own code first on `sys.path`.

>>> import udfs.feature_batches as module
>>> fingerprint = code_fingerprint(["udfs"])
>>> fingerprint["udfs.feature_batches"] == source_hash(module.__file__)
True
>>> stale_modules(fingerprint)
[]
>>> holds(os.path.dirname(os.path.dirname(module.__file__)), fingerprint)
True
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import sys

import cloudpickle
from pyflink.datastream import KeyedProcessFunction

PACKAGES = ("jobs", "udfs", "serving")


def source_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def code_fingerprint(packages=PACKAGES) -> dict:
    """{module name: hash of its source} of every module of the project's packages, as imported here."""
    fingerprint = {}
    for package in packages:
        root = importlib.import_module(package)
        fingerprint[package] = source_hash(root.__file__)
        for info in pkgutil.iter_modules(root.__path__, prefix=f"{package}."):
            fingerprint[info.name] = source_hash(os.path.join(root.__path__[0], info.name.split(".")[-1] + ".py"))
    return fingerprint


def stale_modules(fingerprint: dict) -> list:
    """Imported project modules whose source is not the fingerprint's."""
    stale = []
    for name, digest in fingerprint.items():
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if module is not None and (path is None or not os.path.exists(path) or source_hash(path) != digest):
            stale.append(name)
    return stale


def holds(entry: str, fingerprint: dict) -> bool:
    """Whether a sys.path entry (a folder) holds exactly the fingerprinted modules' source."""
    for name, digest in fingerprint.items():
        path = os.path.join(entry, *name.split("."))
        path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
        if not os.path.exists(path) or source_hash(path) != digest:
            return False
    return True


def use_shipped_code(fingerprint: dict) -> None:
    """Make the next imports of project modules load the fingerprinted source."""
    if not stale_modules(fingerprint):
        return
    # A copy taken at once (under the GIL): at parallelism > 1 the TaskManager's other learner subtasks run in
    # this interpreter too, and an import on one of them while this loop read sys.modules itself would end
    # it with "dictionary changed size during iteration".
    for name in [name for name in list(sys.modules) if name.split(".")[0] in PACKAGES]:
        sys.modules.pop(name, None)
    # The job's files are on sys.path, possibly behind an earlier job's: put the entry holding them first.
    for entry in list(sys.path):
        if holds(entry, fingerprint):
            sys.path.remove(entry)
            sys.path.insert(0, entry)
            break
    importlib.invalidate_caches()


class ShippedCode(KeyedProcessFunction):
    """A KeyedProcessFunction run with the job's own code; see the module's docstring."""

    def __init__(self, function: KeyedProcessFunction):
        self.fingerprint = code_fingerprint()
        self.function_bytes = cloudpickle.dumps(function)
        self.function = None

    def open(self, runtime_context):
        use_shipped_code(self.fingerprint)
        self.function = cloudpickle.loads(self.function_bytes)
        self.function.open(runtime_context)

    def close(self):
        if self.function is not None:
            self.function.close()

    def process_element(self, value, ctx):
        return self.function.process_element(value, ctx)

    def on_timer(self, timestamp, ctx):
        return self.function.on_timer(timestamp, ctx)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
