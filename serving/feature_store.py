"""Each key's latest window features, as read from the features topic; newest window wins.

>>> from udfs.feature_records import FeatureRow
>>> store = FeatureStore()
>>> store.offer(FeatureRow("k", 2000, "h", {"x": 2.0}), received_at=3.0)
True
>>> store.offer(FeatureRow("k", 1000, "h", {"x": 1.0}), received_at=4.0)
False
>>> store.get("k").row.features
{'x': 2.0}
>>> store.remove("k"), store.get("k"), store.offer(FeatureRow("k", 1000, "h", {"x": 1.0}), received_at=4.5)
(True, None, True)

The newest window any key has a row for is the current window: a key whose row is older had no row in
it (a quiet key). It moves only when the follower has applied what it read (`advance`), so that a key
whose row of the new window is among the records being applied is not taken for quiet meanwhile.

>>> store.offer(FeatureRow("j", 3000, "h", {"x": 0.5}), received_at=5.0)
True
>>> store.current_window_end_ms, store.advance(), store.current_window_end_ms, store.quiet(store.get("k"))
(0, None, 3000, True)
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
        self._newest_window_end_ms = 0
        # The end of the newest window with a row, as of the last `advance`.
        self.current_window_end_ms = 0

    def get(self, key: str) -> StoredFeatures | None:
        return self._rows.get(key)

    def __len__(self) -> int:
        return len(self._rows)

    def remove(self, key: str) -> bool:
        """Forget `key`'s features (a tombstone); whether it had any."""
        return self._rows.pop(key, None) is not None

    def offer(self, row: FeatureRow, received_at: float) -> bool:
        current = self._rows.get(row.key)
        if current is not None and current.row.window_end_ms >= row.window_end_ms:
            return False
        self._rows[row.key] = StoredFeatures(row, received_at)
        self._newest_window_end_ms = max(self._newest_window_end_ms, row.window_end_ms)
        return True

    def advance(self) -> None:
        """Make the newest window offered so far the current one (after a poll's records are applied)."""
        self.current_window_end_ms = self._newest_window_end_ms

    def quiet(self, stored: StoredFeatures) -> bool:
        """Whether the key had no row in the current window: its latest row is of an older one."""
        return stored.row.window_end_ms < self.current_window_end_ms
