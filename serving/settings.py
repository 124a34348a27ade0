"""Every setting under `serving:` in the config, read and checked at once by the one settings validator
(jobs.config.settings_of): a mistyped key is named with the closest setting, a wrong type or range names
its file and setting. A replica, its limits, its follower and scripts/serve.sh take their values from here.

>>> from jobs.config import Config
>>> settings = ServingSettings.from_config(Config({"serving": {"base_port": 8100, "partitions": [1]}}, "job.yaml"))
>>> settings.base_port, settings.partitions, settings.max_body_bytes, settings.fallback_key
(8100, [1], 1048576, None)
>>> ServingSettings.from_config(Config({"serving": {"max_body_byte": 10}}, "job.yaml"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'serving.max_body_byte' is not a setting: did you mean 'max_body_bytes'? ...
>>> ServingSettings.from_config(Config({"serving": {"max_feature_age_s": "5m"}}, "job.yaml"))
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'serving.max_feature_age_s' must be a number of seconds > 0, not '5m'
"""

from __future__ import annotations

import dataclasses

from jobs.config import Config, settings_of
from serving.limits import Limits, seconds

SECTION = "serving"


def _increasing_seconds(value: list) -> bool:
    return (
        bool(value)
        and all(not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 for v in value)
        and all(a < b for a, b in zip(value, value[1:]))
    )


def _distinct_partitions(value: list) -> bool:
    return (
        bool(value)
        and len(set(value)) == len(value)
        and all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in value)
    )


@dataclasses.dataclass(frozen=True)
class ServingSettings(Limits):
    """The limits (serving.limits) and the rest of `serving:`; see conf/job.yaml for what each does."""

    # scripts/serve.sh starts replicas on base_port .. base_port + N - 1.
    base_port: int = dataclasses.field(
        default=8000, metadata={"must": "a port number (1 to 65535)", "check": lambda v: 1 <= v <= 65535}
    )
    fallback_key: str | None = dataclasses.field(
        default=None, metadata={"must": "non-empty text", "check": lambda v: bool(v)}
    )
    # No age by default: features are never marked stale.
    max_feature_age_s: float = seconds(float("inf"))
    freshness_buckets: list = dataclasses.field(
        default_factory=lambda: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
        metadata={"must": "a non-empty list of seconds > 0 in increasing order", "check": _increasing_seconds},
    )
    # Its range is the registry's own (serving.registry), named by serving.replica.model_registry.
    history_per_key: int = dataclasses.field(default=3, metadata={"must": "a whole number of at least 1"})
    shadow_challenger: bool = False
    reader_process: bool = False
    # None: every partition (serving.partitions).
    partitions: list | None = dataclasses.field(
        default=None,
        metadata={
            "must": "null (every partition) or a list of distinct partition numbers >= 0",
            "check": _distinct_partitions,
        },
    )

    @classmethod
    def from_config(cls, config: Config) -> ServingSettings:
        return settings_of(cls, config.get(SECTION, {}) or {}, SECTION, config.error)
