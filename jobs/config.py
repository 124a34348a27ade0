"""The one config loader: YAML files from `conf/`, read with dotted paths.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "job.yaml")
>>> _ = open(path, "w").write("kafka:\\n  bootstrap_servers: 127.0.0.1:9092\\n")
>>> config = load_config(path)
>>> config["kafka.bootstrap_servers"]
'127.0.0.1:9092'
>>> config.get("kafka.acks", "all")
'all'
>>> config["kafka.acks"]
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: missing setting 'kafka.acks'
>>> whole_number(Config({"learner": {"shards": "4"}}, "job.yaml"), "learner.shards", 4, minimum=1)
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'learner.shards' must be a whole number >= 1, not '4'
>>> @dataclasses.dataclass(frozen=True)
... class Gate:
...     window: int = 50
...     margin: float = 0.05
>>> error = Config({}, "job.yaml").error
>>> settings_of(Gate, {"window": 20, "margin": 0}, "safety.gate", error)
Gate(window=20, margin=0.0)
>>> settings_of(Gate, {"windw": 20}, "safety.gate", error)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'safety.gate.windw' is not a setting: did you mean 'window'?
(safety.gate has window, margin)
>>> settings_of(Gate, {"window": "50"}, "safety.gate", error)
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'safety.gate.window' must be a whole number, not '50'
>>> @dataclasses.dataclass(frozen=True)
... class Wait:
...     timeout_s: float = dataclasses.field(default=5.0, metadata={"must": "seconds > 0", "check": lambda v: v > 0})
>>> settings_of(Wait, {"timeout_s": 0}, "wait", error)
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'wait.timeout_s' must be seconds > 0, not 0
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
import types
import typing
from typing import Any, NoReturn

import yaml

_MISSING = object()


class ConfigError(ValueError):
    """A configuration file is missing a setting or has a wrong value."""


# An entry point's exit code for a config, option or input mistake (argparse's own, for a bad option).
USAGE_EXIT_CODE = 2


def exit_with(error: Exception) -> NoReturn:
    """End an entry point on a config or input mistake: one line naming the file and setting, on stderr,
    and exit code 2, rather than a traceback."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


class Config:
    """A parsed YAML mapping that names its file in every error."""

    def __init__(self, data: dict, source: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        self.data = data
        self.source = source
        # Files a config names (DDL, say) are relative to the project folder: the one holding conf/.
        self.base_dir = os.path.dirname(os.path.dirname(os.path.abspath(source)))

    def get(self, path: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    raise ConfigError(f"{os.path.basename(self.source)}: missing setting '{path}'")
                return default
            node = node[part]
        return node

    def __getitem__(self, path: str) -> Any:
        return self.get(path)

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{os.path.basename(self.source)}: '{path}' {message}")

    def file_path(self, path: str) -> str:
        """A file the config names, relative to the project folder unless absolute."""
        return path if os.path.isabs(path) else os.path.join(self.base_dir, path)


def whole_number(config: Config, path: str, default: int, minimum: int) -> int:
    """A whole-number setting, checked: a bool, a float or text is refused, naming the setting."""
    value = config.get(path, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise config.error(path, f"must be a whole number >= {minimum}, not {value!r}")
    return value


def seconds(config: Config, path: str, default: float) -> float:
    """A positive duration setting; a bool, text or a number <= 0 is refused, naming the setting."""
    value = config.get(path, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise config.error(path, f"must be a number of seconds > 0, not {value!r}")
    return float(value)


def text(config: Config, path: str, default: Any = _MISSING) -> str:
    """A non-empty text setting (a topic, a server list); a number or a list is refused, naming the setting."""
    value = config.get(path, default)
    if not isinstance(value, str) or not value:
        raise config.error(path, f"must be non-empty text, not {value!r}")
    return value


def column_names(config: Config, path: str) -> tuple[str, ...]:
    """A non-empty list of distinct column names."""
    value = config[path]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, str) and c for c in value)
        or len(set(value)) != len(value)
    ):
        raise config.error(path, f"must be a non-empty list of distinct column names, not {value!r}")
    return tuple(value)


def increasing_seconds(config: Config, path: str, default: list) -> list[float]:
    """A non-empty list of durations > 0 in increasing order (histogram buckets)."""
    value = config.get(path, default)
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in value)
        or any(a >= b for a, b in zip(value, value[1:]))
    ):
        raise config.error(path, f"must be a non-empty list of seconds > 0 in increasing order, not {value!r}")
    return [float(v) for v in value]


# What a settings dataclass field's type takes, and how a mistake is named.
_KINDS = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "text"),
    dict: (lambda v: isinstance(v, dict), "a mapping"),
    list: (lambda v: isinstance(v, list), "a list"),
}


def _ANY(value) -> bool:
    return True


def settings_of(cls, section: dict, path: str, error):
    """The one settings validator: a settings dataclass `cls` from the config mapping at `path`, each
    value checked against its field's type (an `X | None` field also takes null), an unknown key named
    with the closest setting; `error(path, message)` makes the error (`Config.error`). A field's metadata
    may narrow it: `check`, a rule its value must also meet, and `must`, what the message says it takes
    (its type's word otherwise). Rules between settings are the class's own, checked after."""
    if not isinstance(section, dict):
        raise error(path, f"must be a mapping, not {section!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in section:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise error(f"{path}.{name}", f"is not a setting: {hint}({path} has {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in section.items():
        kind, optional = hints[name], False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = (args[0] if len(args) == 1 else Any), type(None) in typing.get_args(kind)
        kind = typing.get_origin(kind) or kind
        if value is None and optional:
            values[name] = None
            continue
        check, meta = _KINDS.get(kind), fields[name].metadata
        if (check is not None and not check[0](value)) or not meta.get("check", _ANY)(value):
            raise error(f"{path}.{name}", f"must be {meta.get('must', check[1] if check else 'valid')}, not {value!r}")
        values[name] = float(value) if kind is float else value
    return cls(**values)


def derive_config(config: Config, path: str, suffix: str | None = None, overrides: dict | None = None) -> Config:
    """Write a variant of `config` to `path`: with `suffix`, its own topics, consumer group and
    transactional ids (a run that shares nothing with earlier ones); `overrides` merged in last.
    DDL (history's too), cold-start template and signing key paths stay pointing at the original project folder."""
    data = copy.deepcopy(config.data)
    if suffix:
        for spec in data.get("topics", {}).values():
            spec["name"] = f"{spec['name']}-{suffix}"
        for section, key in (("source", "group_id"), ("sinks", "transactional_id_prefix")):
            if key in data.get(section, {}):
                data[section][key] = f"{data[section][key]}-{suffix}"
    _merge(data, overrides or {})
    if "ddl" in data.get("sql", {}):
        data["sql"]["ddl"] = [config.file_path(p) for p in data["sql"]["ddl"]]
    history = data.get("history") or {}
    for key in ("events_ddl", "replaces"):
        if history.get(key):
            history[key] = config.file_path(history[key])
    cold_start = (data.get("safety") or {}).get("cold_start") or {}
    if cold_start.get("template"):
        cold_start["template"] = config.file_path(cold_start["template"])
    keys = (data.get("signing") or {}).get("keys")
    if isinstance(keys, dict):
        data["signing"]["keys"] = {key_id: config.file_path(str(path)) for key_id, path in keys.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return load_config(path)


def _merge(target: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def load_config(path: str) -> Config:
    """Read one YAML config file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return Config(data or {}, path)
