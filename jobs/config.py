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
"""

from __future__ import annotations

import os
from typing import Any

import yaml

_MISSING = object()


class ConfigError(ValueError):
    """A configuration file is missing a setting or has a wrong value."""


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
