"""The one SQL loader: DDL files from `sql/` with `${dotted.path}` variables filled from a config.

>>> from jobs.config import Config
>>> config = Config({"window": {"size": "10 SECOND"}}, "job.yaml")
>>> render_sql("SELECT ... INTERVAL '${window.size}'", config, "features.sql")
"SELECT ... INTERVAL '10 SECOND'"
>>> render_sql("${window.slide}", config, "features.sql")
Traceback (most recent call last):
...
jobs.config.ConfigError: features.sql line 1: ${window.slide} is not set in job.yaml

A statement Flink rejects is named by its file and line (`execute_sql_files`), Flink's reason in one line:

>>> rejected(Statement("CREATE VIEW v AS\\nSELECT day FROM t", "sql/v.sql", 4),
...          'SQL parse failed. Encountered "day" at line 2, column 8.\\nWas expecting one of: ...')
'sql/v.sql line 5: SQL parse failed. Encountered "day" (column 8)'
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Statement:
    """One rendered statement, and where it starts: its file (relative to the config's project folder
    when inside it, as `sql/features.sql`) and line."""

    text: str
    path: str
    line: int


class SqlError(ConfigError):
    """A DDL statement Flink rejected, named by its file and line."""


def statements(path: str, config: Config) -> list[Statement]:
    """The statements of one `.sql` file, rendered; statements are separated by `;` at a line end."""
    full_path = config.file_path(path)
    with open(full_path, encoding="utf-8") as f:
        text = f.read()
    shown = os.path.relpath(full_path, config.base_dir)
    shown = full_path if shown.startswith("..") else shown
    rendered = render_sql(text, config, os.path.basename(path))
    # Whole-line comments go first (their lines stay, empty, so lines keep their numbers): one ending in
    # ";" must not end a statement.
    uncommented = _COMMENT_LINE.sub("", rendered)
    found, start = [], 0
    for end in [*re.finditer(r";\s*(?:\n|$)", uncommented), None]:
        chunk = uncommented[start : end.start() if end else len(uncommented)]
        if chunk.strip():
            first = start + len(chunk) - len(chunk.lstrip())
            found.append(Statement(chunk.strip(), shown, uncommented.count("\n", 0, first) + 1))
        if end:
            start = end.end()
    return found


def load_sql(path: str, config: Config) -> list[str]:
    """The statements of one `.sql` file, rendered, as text."""
    return [statement.text for statement in statements(path, config)]


def ddl_statements(config: Config, paths_setting: str = "sql.ddl") -> list[str]:
    """Every statement of the files the config lists under `paths_setting`, rendered, in order."""
    return [statement for path in config[paths_setting] for statement in load_sql(path, config)]


def execute_sql_files(table_env, config: Config, paths_setting: str = "sql.ddl") -> None:
    """Run every statement of the files the config lists, in order; one Flink rejects raises SqlError
    naming its file and line with Flink's reason in one line, instead of Flink's Java trace."""
    execute_statements(table_env, [s for path in config[paths_setting] for s in statements(path, config)])


def execute_statements(table_env, found: list[Statement]) -> None:
    """Run rendered statements in order; the first Flink rejects raises SqlError naming its file and line."""
    from py4j.protocol import Py4JJavaError  # with PyFlink: the config and SQL loaders need neither
    from pyflink.util.exceptions import JavaException

    for statement in found:
        try:
            table_env.execute_sql(statement.text)
        except Py4JJavaError as e:
            raise SqlError(rejected(statement, str(e.java_exception.getMessage() or e.java_exception))) from None
        except JavaException as e:  # PyFlink's own classes for some (TableException); str() is the trace
            raise SqlError(rejected(statement, re.sub(r"^[\w.$]+: ", "", str(e)))) from None


# Calcite's positions, counted from the statement's first line: "From line 2, column 8 to line 2, column 11: "
# before a validation error, "at line 2, column 8" inside a parse error.
_RANGE = re.compile(r"^From line (\d+), column (\d+) to line \d+, column \d+: ")
_AT = re.compile(r",? at line (\d+), column (\d+)\.?")


def rejected(statement: Statement, message: str) -> str:
    """`<file> line <N>: <reason>`: Flink's first line of `message`, its position turned into the file's line."""
    reason = (message.strip().splitlines() or ["(no message)"])[0]
    line, column = statement.line, None
    if position := _RANGE.match(reason) or _AT.search(reason):
        line, column = statement.line + int(position.group(1)) - 1, position.group(2)
        reason = (reason[: position.start()] + reason[position.end() :]).strip()
    return f"{statement.path} line {line}: {reason}" + (f" (column {column})" if column else "")
