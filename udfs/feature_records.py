"""The latest window feature row of a key, as JSON bytes on the compacted features topic.

The learner job writes one per feature row, in SQL (`select_records`: no Python on that path);
serving replicas decode them so that a caller can ask for a prediction by key alone.

>>> print(select_records("features", "entity", "window_end", ["views", "price"], "f00d"))
SELECT `entity` AS model_key, CAST(JSON_OBJECT(
  'key' VALUE `entity`,
  'window_end_ms' VALUE UTC_MILLIS(`window_end`),
  'feature_schema_hash' VALUE 'f00d',
  'features' VALUE JSON_OBJECT('views' VALUE `views`, 'price' VALUE `price`)) AS BYTES) AS record
FROM `features`
>>> decode_features(b'{"features":{"price":9.5,"views":3.0},"feature_schema_hash":"f00d",'
...                 b'"key":"book-1","window_end_ms":60000}')
FeatureRow(key='book-1', window_end_ms=60000, feature_schema_hash='f00d', features={'price': 9.5, 'views': 3.0})
>>> decode_features(b"[1]")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
udfs.feature_records.FeatureRecordError: not a feature row: expected a JSON object with key,
window_end_ms, feature_schema_hash, features
"""

from __future__ import annotations

import dataclasses
import json

from udfs.feature_batches import window_end_ms


class FeatureRecordError(ValueError):
    """Bytes that are not a feature row."""


@dataclasses.dataclass(frozen=True)
class FeatureRow:
    key: str
    window_end_ms: int
    feature_schema_hash: str
    features: dict


def select_records(view: str, key: str, window_end: str, feature_names, schema_hash: str) -> str:
    """The SQL query turning the feature view into (model_key, record) rows for the features table."""
    features = ", ".join(f"'{name}' VALUE `{name}`" for name in feature_names)
    return (
        f"SELECT `{key}` AS model_key, CAST(JSON_OBJECT(\n"
        f"  'key' VALUE `{key}`,\n"
        f"  'window_end_ms' VALUE {window_end_ms(window_end)},\n"
        f"  'feature_schema_hash' VALUE '{schema_hash}',\n"
        f"  'features' VALUE JSON_OBJECT({features})) AS BYTES) AS record\n"
        f"FROM `{view}`"
    )


def decode_features(data: bytes) -> FeatureRow:
    try:
        row = json.loads(data)
        return FeatureRow(
            key=str(row["key"]),
            window_end_ms=int(row["window_end_ms"]),
            feature_schema_hash=str(row["feature_schema_hash"]),
            features=dict(row["features"]),
        )
    except (ValueError, TypeError, KeyError):
        raise FeatureRecordError(
            "not a feature row: expected a JSON object with key, window_end_ms, feature_schema_hash, features"
        ) from None
