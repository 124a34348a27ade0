"""The type of each feature column, as the job publishes it with every model and serving checks requests by.

Four types, named as JSON Schema names them, each from the SQL types of the feature view's column
(Flink's `LogicalTypeRoot`) and each reaching River as the Python value Flink gives the learner:

| type | SQL column types | River sees | a request must send |
| --- | --- | --- | --- |
| `number` | FLOAT, DOUBLE | float | a finite number (JSON 3 or 3.5) |
| `integer` | TINYINT, SMALLINT, INTEGER, BIGINT | int | a whole number (3, or 3.0 which is taken as 3) |
| `string` | CHAR, VARCHAR (STRING) | str | a string: a categorical feature (`preprocessing.OneHotEncoder`) |
| `boolean` | BOOLEAN | bool | true or false |

The job reads the types at submit (jobs/learner_job.py) and refuses any other column type there; the
envelope (udfs/envelope.py, format 4) names each feature's type; a replica checks a request's features
against the types of the model that answers it (serving/requests.py), so that a string reaches a model
that learned strings and a number one that learned numbers. Envelopes written before format 4 name no
types: their features are all numbers, as every feature was then.

>>> of_sql("VARCHAR", "STRING"), of_sql("BIGINT", "BIGINT"), of_sql("BOOLEAN", "BOOLEAN")
('string', 'integer', 'boolean')
>>> of_sql("DECIMAL", "DECIMAL(10, 2)")
Traceback (most recent call last):
...
udfs.feature_types.FeatureTypeError: is of type DECIMAL(10, 2), which River cannot learn as is: CAST it AS DOUBLE
>>> checked("genre", "fiction", "string"), checked("views", 3.0, "integer"), checked("x", 2, "number")
('fiction', 3, 2.0)
>>> checked("genre", 7, "string")
Traceback (most recent call last):
...
udfs.feature_types.FeatureTypeError: feature 'genre' must be a string, got int
"""

from __future__ import annotations

import math

NUMBER, INTEGER, STRING, BOOLEAN = "number", "integer", "string", "boolean"
FEATURE_TYPES = (NUMBER, INTEGER, STRING, BOOLEAN)

_SQL = {
    "FLOAT": NUMBER,
    "DOUBLE": NUMBER,
    "TINYINT": INTEGER,
    "SMALLINT": INTEGER,
    "INTEGER": INTEGER,
    "BIGINT": INTEGER,
    "CHAR": STRING,
    "VARCHAR": STRING,
    "BOOLEAN": BOOLEAN,
}


class FeatureTypeError(ValueError):
    """A column type River cannot learn, or a value that is not of its feature's type."""


def of_sql(type_root: str, type_name: str) -> str:
    """The feature type of a column of this SQL type (its `LogicalTypeRoot` name, and as the DDL spells it)."""
    if type_root in _SQL:
        return _SQL[type_root]
    # A DECIMAL reaches Python as decimal.Decimal, which River's arithmetic on floats refuses.
    hint = "CAST it AS DOUBLE" if type_root == "DECIMAL" else "features are numbers, integers, strings or booleans"
    raise FeatureTypeError(f"is of type {type_name}, which River cannot learn as is: {hint}")


def schema(feature_names, feature_types=()) -> dict:
    """{name: type} in the features' order; with no types given, every feature a number (as before format 4)."""
    types = tuple(feature_types) or (NUMBER,) * len(feature_names)
    if len(types) != len(feature_names) or any(t not in FEATURE_TYPES for t in types):
        raise FeatureTypeError(
            f"feature types {types!r} do not give one of {', '.join(FEATURE_TYPES)} to each of {list(feature_names)}"
        )
    return dict(zip(feature_names, types))


def schema_error(types) -> str | None:
    """What is wrong with an envelope's `feature_types`, or None."""
    if not isinstance(types, dict) or not all(isinstance(k, str) and v in FEATURE_TYPES for k, v in types.items()):
        return f"feature_types must map each feature to one of {', '.join(FEATURE_TYPES)}, got {types!r}"
    return None


def _got(value) -> str:
    return "null" if value is None else type(value).__name__


def checked(name: str, value, kind: str):
    """`value` as the model learned values of this feature type; FeatureTypeError naming the field and
    the type it needs otherwise."""
    if kind == STRING:
        if type(value) is str:
            return value
        raise FeatureTypeError(f"feature '{name}' must be a string, got {_got(value)}")
    if kind == BOOLEAN:
        if type(value) is bool:
            return value
        raise FeatureTypeError(f"feature '{name}' must be a boolean (true or false), got {_got(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        article = "an integer" if kind == INTEGER else "a number"
        raise FeatureTypeError(f"feature '{name}' must be {article}, got {_got(value)}")
    if not math.isfinite(value):
        raise FeatureTypeError(f"feature '{name}' must be finite, got {value}")
    if kind == INTEGER:
        if value != int(value):
            raise FeatureTypeError(f"feature '{name}' must be an integer (a whole number), got {value}")
        return int(value)
    return float(value)
