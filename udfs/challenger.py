"""Champion and challenger: a second declared model learns the same rows of a key, test-then-train.

Both are scored on the same last `window` rows; when the challenger is better by more than `margin`
over a full window, the two swap roles. The former champion keeps learning as the challenger, so a
spec that loses today can win back after the data changes. Serving answers with the champion and
may shadow-score the challenger (it travels in the snapshot envelope).

>>> from river import metrics
>>> from udfs.gate import rolling
>>> settings = ChallengerSettings(enabled=True, window=3, margin=0.0, model={})
>>> duel = Duel(champion_recent=rolling(metrics.Accuracy(), 3), challenger_recent=rolling(metrics.Accuracy(), 3))
>>> for champion_right, challenger_right in [(True, True), (False, True), (False, True)]:
...     duel.champion_recent.update(True, champion_right)
...     duel.challenger_recent.update(True, challenger_right)
>>> challenger_wins(settings, duel)
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jobs.config import settings_of
from udfs.gate import value_of, worse_by_more_than
from udfs.model_spec import build_model

ROLES = ("model", "challenger")


@dataclasses.dataclass(frozen=True)
class ChallengerSettings:
    enabled: bool = False
    model: dict = dataclasses.field(default_factory=dict)
    window: int = 200
    margin: float = 0.0

    @classmethod
    def from_config(cls, section: dict, error) -> "ChallengerSettings":
        settings = settings_of(cls, section, "safety.challenger", error)
        if settings.enabled:
            build_model(settings.model, "safety.challenger.model")
        if settings.window < 1 or settings.margin < 0:
            raise error("safety.challenger", "needs window >= 1 and margin >= 0")
        return settings


@dataclasses.dataclass
class Duel:
    """One key's challenger and the recent scores of both models."""

    champion_recent: Any
    challenger_recent: Any
    challenger: Any = None
    metric: Any = None
    # Which declared spec the champion is: "model" (conf's `model`) or "challenger".
    champion_role: str = "model"
    promotions: int = 0

    def challenger_role(self) -> str:
        return ROLES[1 - ROLES.index(self.champion_role)]


def challenger_wins(settings: ChallengerSettings, duel: Duel) -> bool:
    """Whether the challenger beat the champion by more than the margin over a full window."""
    if len(duel.challenger_recent.window) < settings.window:
        return False
    champion = value_of(duel.champion_recent)
    return worse_by_more_than(champion, value_of(duel.challenger_recent), settings.margin, duel.champion_recent)
