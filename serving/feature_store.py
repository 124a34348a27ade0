"""Each key's latest window features, as read from the features topic; newest window wins.

>>> from udfs.feature_records import FeatureRow
>>> store = FeatureStore()
>>> store.offer(FeatureRow("k", 2000, "h", {"x": 2.0}), received_at=3.0)
True
>>> store.offer(FeatureRow("k", 1000, "h", {"x": 1.0}), received_at=4.0)
False
>>> store.get("k").row.features
{'x': 2.0}
"""

from __future__ import annotations

import dataclasses

from udfs.feature_records import FeatureRow


@dataclasses.dataclass(frozen=True)
class StoredFeatures:
    row: FeatureRow
    received_at: float

    def age_s(self, now: float) -> float:
        """Seconds since the end of the window these features describe."""
        return round(now - self.row.window_end_ms / 1000, 3)


class FeatureStore:
    """One writer (the follower), many readers; a row is replaced whole, like models in the registry."""

    def __init__(self):
        self._rows: dict[str, StoredFeatures] = {}

    def get(self, key: str) -> StoredFeatures | None:
        return self._rows.get(key)

    def __len__(self) -> int:
        return len(self._rows)

    def offer(self, row: FeatureRow, received_at: float) -> bool:
        current = self._rows.get(row.key)
        if current is not None and current.row.window_end_ms >= row.window_end_ms:
            return False
        self._rows[row.key] = StoredFeatures(row, received_at)
        return True
