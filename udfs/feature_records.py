"""The latest window feature row of a key, as JSON bytes on the compacted features topic.

The learner job encodes one per feature row; serving replicas decode them so that a caller can ask
for a prediction by key alone.

>>> record = encode_features("book-1", 60_000, "f00d", {"views": 3.0, "price": 9.5})
>>> decode_features(record)
FeatureRow(key='book-1', window_end_ms=60000, feature_schema_hash='f00d', features={'views': 3.0, 'price': 9.5})
>>> decode_features(b"[1]")
Traceback (most recent call last):
...
udfs.feature_records.FeatureRecordError: not a feature row: expected a JSON object with key, window_end_ms, feature_schema_hash, features
"""

from __future__ import annotations

import dataclasses
import json


class FeatureRecordError(ValueError):
    """Bytes that are not a feature row."""


@dataclasses.dataclass(frozen=True)
class FeatureRow:
    key: str
    window_end_ms: int
    feature_schema_hash: str
    features: dict


def encode_features(key: str, window_end_ms: int, schema_hash: str, features: dict) -> bytes:
    return json.dumps({"key": key, "window_end_ms": window_end_ms, "feature_schema_hash": schema_hash,
                       "features": features}, separators=(",", ":"), allow_nan=False).encode()


def decode_features(data: bytes) -> FeatureRow:
    try:
        row = json.loads(data)
        return FeatureRow(key=str(row["key"]), window_end_ms=int(row["window_end_ms"]),
                          feature_schema_hash=str(row["feature_schema_hash"]), features=dict(row["features"]))
    except (ValueError, TypeError, KeyError):
        raise FeatureRecordError(
            "not a feature row: expected a JSON object with key, window_end_ms, feature_schema_hash, features"
        ) from None
