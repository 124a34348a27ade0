"""The one SQL loader: DDL files from `sql/` with `${dotted.path}` variables filled from a config.

>>> from jobs.config import Config
>>> config = Config({"window": {"size": "10 SECOND"}}, "job.yaml")
>>> render_sql("SELECT ... INTERVAL '${window.size}'", config, "features.sql")
"SELECT ... INTERVAL '10 SECOND'"
>>> render_sql("${window.slide}", config, "features.sql")
Traceback (most recent call last):
...
jobs.config.ConfigError: features.sql line 1: ${window.slide} is not set in job.yaml
"""

from __future__ import annotations

import os
import re

from jobs.config import Config, ConfigError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_COMMENT_LINE = re.compile(r"(?m)^[ \t]*--.*$")


def render_sql(text: str, config: Config, name: str) -> str:
    """Replace every `${path}` in `text` with the config's scalar value at that dotted path."""

    def substitute(match: re.Match) -> str:
        path = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        try:
            value = config[path]
        except ConfigError:
            raise ConfigError(
                f"{name} line {line}: ${{{path}}} is not set in {os.path.basename(config.source)}"
            ) from None
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name} line {line}: ${{{path}}} is a {type(value).__name__}, not a value")
        return str(value)

    return _VARIABLE.sub(substitute, text)


def load_sql(path: str, config: Config) -> list[str]:
    """The statements of one `.sql` file, rendered; statements are separated by `;` at a line end."""
    with open(config.file_path(path), encoding="utf-8") as f:
        text = f.read()
    rendered = render_sql(text, config, os.path.basename(path))
    # Whole-line comments go first: one ending in ";" must not end a statement.
    uncommented = _COMMENT_LINE.sub("", rendered)
    statements = [s.strip() for s in re.split(r";\s*(?:\n|$)", uncommented)]
    return [s for s in statements if s]


def ddl_statements(config: Config, paths_setting: str = "sql.ddl") -> list[str]:
    """Every statement of the files the config lists under `paths_setting`, rendered, in order."""
    return [statement for path in config[paths_setting] for statement in load_sql(path, config)]


def execute_sql_files(table_env, config: Config, paths_setting: str = "sql.ddl") -> None:
    for statement in ddl_statements(config, paths_setting):
        table_env.execute_sql(statement)
