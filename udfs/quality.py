"""Data-quality guard: keep rows a key's model should not learn from out of it.

Per key and numeric feature, running mean and variance of the rows learned so far (a string or
boolean feature counts only towards identical rows). A row is quarantined
when a feature lies more than `max_sigma` standard deviations from its mean (after `warmup_rows`),
or when the same features arrive more than `max_repeats` times in a row
(a stuck sensor). A quarantined row is predicted on but not learned, and does not move the
statistics, so a burst of bad rows cannot drag the limits along with it.

>>> settings = QualitySettings(enabled=True, max_sigma=4, warmup_rows=10, max_repeats=2)
>>> stats = FeatureStats()
>>> for i in range(20):
...     stats.observe({"price": 10 + i % 3})
...     stats.learn({"price": 10 + i % 3})
>>> check(settings, stats, {"price": 11.5}) is None
True
>>> check(settings, stats, {"price": 500.0})
'price=500.0 is 592.4 standard deviations from its mean 11.0'
>>> for _ in range(3):
...     stats.observe({"price": 12.0})
>>> check(settings, stats, {"price": 12.0})
'the same features for 3 rows in a row (a stuck source?)'
>>> stats.learn({"price": 11.0, "genre": "fiction", "new": True}); sorted(stats.variances)
['price']
"""

from __future__ import annotations

import dataclasses
import math

from river import stats as river_stats

from jobs.config import settings_of


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    enabled: bool = False
    max_sigma: float = 6.0
    warmup_rows: int = 30
    max_repeats: int = 5

    @classmethod
    def from_config(cls, section: dict, error) -> "QualitySettings":
        settings = settings_of(cls, section, "safety.quality", error)
        if settings.max_sigma <= 0 or settings.warmup_rows < 2 or settings.max_repeats < 1:
            raise error("safety.quality", "needs max_sigma > 0, warmup_rows >= 2 and max_repeats >= 1")
        return settings


@dataclasses.dataclass
class FeatureStats:
    """Running statistics of the rows a key learned, and the run of identical rows it was sent."""

    variances: dict = dataclasses.field(default_factory=dict)
    last: dict | None = None
    repeats: int = 0
    quarantined: int = 0

    def observe(self, x: dict) -> None:
        """Every row, learned or not: the run of identical rows ends only when the features change."""
        self.repeats = self.repeats + 1 if x == self.last else 1
        self.last = dict(x)

    def learn(self, x: dict) -> None:
        for name, value in x.items():
            if _numeric(value):
                self.variances.setdefault(name, river_stats.Var()).update(value)


def _numeric(value) -> bool:
    """Whether a feature has a mean and a spread: numbers do; strings (categories) and booleans do not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(settings: QualitySettings, stats: FeatureStats, x: dict) -> str | None:
    """Why the row, just observed, should be quarantined; None when it may be learned."""
    if stats.repeats > settings.max_repeats:
        return f"the same features for {stats.repeats} rows in a row (a stuck source?)"
    for name, value in x.items():
        variance = stats.variances.get(name)
        if variance is None or variance.n < settings.warmup_rows or not _numeric(value):
            continue
        mean, std = variance.mean.get(), math.sqrt(max(variance.get(), 0.0))
        distance = abs(value - mean) / std if std > 0 else (0.0 if value == mean else math.inf)
        if distance > settings.max_sigma:
            return f"{name}={value} is {distance:.1f} standard deviations from its mean {mean:.1f}"
    return None
