"""The learner's settings, read from the job's config: `LearnerSettings` and its `SafetySettings`.

Read once at submit time (jobs/learner_job.py), so that a config mistake stops the submit with one
line naming the file and setting; the frozen settings then travel with the job to every TaskManager.

>>> from jobs.config import Config
>>> safety = SafetySettings.from_config(Config({"safety": {"drift": {"enabled": True}}}, "conf/job.yaml"))
>>> safety.drift.enabled, safety.drift.action, safety.gate.enabled
(True, 'reset', False)
>>> SafetySettings.from_config(Config({"safety": {"drfit": {}}}, "conf/job.yaml"))  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'safety' has unknown part(s) drfit; it has drift, gate, challenger,
cold_start, quality
>>> LearnerSettings.from_config(Config({"snapshots": {"policy": "every_minute"}},
...                                    "conf/job.yaml"))  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'snapshots.policy' must be one of every_n_updates, every_window,
every_seconds, not 'every_minute'
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from jobs.config import whole_number
from udfs.bootstrap import BOOTSTRAP_MODES
from udfs.challenger import ChallengerSettings
from udfs.cold_start import PriorSettings, load_template
from udfs.drift import DriftSettings
from udfs.empty_windows import EmptyWindows
from udfs.gate import GateSettings
from udfs.idle_keys import idle_ttl_ms
from udfs.quality import QualitySettings
from udfs.safe_pickle import ModelClasses, declared_classes
from udfs.signing import SigningSettings

SNAPSHOT_POLICIES = ("every_n_updates", "every_window", "every_seconds")


@dataclasses.dataclass(frozen=True)
class SafetySettings:
    drift: DriftSettings = DriftSettings()
    gate: GateSettings = GateSettings()
    challenger: ChallengerSettings = ChallengerSettings()
    cold_start: PriorSettings = PriorSettings()
    quality: QualitySettings = QualitySettings()

    @property
    def guards_any_key(self) -> bool:
        """Whether any guard a key's state carries (drift, gate, challenger, quality) is on."""
        return any(guard.enabled for guard in (self.drift, self.gate, self.challenger, self.quality))

    @classmethod
    def from_config(cls, config) -> "SafetySettings":
        section = config.get("safety", None) or {}
        kinds = {
            "drift": DriftSettings,
            "gate": GateSettings,
            "challenger": ChallengerSettings,
            "cold_start": PriorSettings,
            "quality": QualitySettings,
        }
        if unknown := set(section) - set(kinds):
            raise config.error("safety", f"has unknown part(s) {', '.join(sorted(unknown))}; it has {', '.join(kinds)}")
        parts = {}
        for name, kind in kinds.items():
            part = section.get(name) or {}
            if not isinstance(part, dict):
                raise config.error(f"safety.{name}", f"must be a mapping, not {part!r}")
            parts[name] = kind.from_config(part, config.error)
        safety = cls(**parts)
        if safety.drift.action == "promote_challenger" and not safety.challenger.enabled:
            raise config.error("safety.drift.action", "promote_challenger needs safety.challenger.enabled: true")
        return safety


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    model: dict
    metric: dict
    feature_names: tuple
    window_ms: int
    # Each feature's type (udfs/feature_types.py), in feature_names' order, read by the job from the feature
    # view's SQL column types and published in every envelope; empty: every feature a number.
    feature_types: tuple = ()
    label_delay_windows: int = 0
    max_pending_windows: int = 100
    # The label of a window in which the key has no row (features.empty_window_label; None: not
    # declared, and a row whose label window closes without a row of the key is dropped and counted).
    empty_window_label: Any = None
    snapshot_policy: str = "every_n_updates"
    snapshot_every_n: int = 10
    snapshot_every_ms: int = 5000
    # every_n_updates: how long an unpublished update may wait for the Nth (0: as long as it takes).
    snapshot_max_wait_ms: int = 0
    safety: SafetySettings = SafetySettings()
    # Feature rows reach the learner grouped per (shard of the key, window): udfs/feature_batches.py.
    shards: int = 4
    # Keys whose state the learner keeps unpickled between batches (0: none).
    state_cache_keys: int = 100_000
    # Calls into the learner (one per watermark that closes windows) between writes of a shard's
    # changed states to Flink state: udfs/learner_function.py.
    state_write_every: int = 8
    # Event time without a row after which a key's state is removed (lifecycle.idle_ttl_seconds; 0:
    # never): udfs/idle_keys.py.
    idle_ttl_ms: int = 0
    # (bootstrap servers, snapshot topic) when keys without state start from their newest snapshot:
    # udfs/bootstrap.py.
    bootstrap_from: tuple | None = None
    # The cold-start template's pickled model, read and verified at submit time so that it ships with the job.
    prior_template: bytes | None = dataclasses.field(default=None, repr=False)
    # The job's lineage: its submit time in ms, given to the keys whose state it creates (KeyState.generation).
    generation: int = 0
    # The key files envelopes are signed with and verified by (only paths: each process reads the keys).
    signing: SigningSettings = SigningSettings()
    # What model payloads read back (snapshots to start from, the template) may name: udfs/safe_pickle.py.
    model_classes: ModelClasses = ModelClasses()

    @classmethod
    def from_config(cls, config) -> "LearnerSettings":
        policy = config.get("snapshots.policy", cls.snapshot_policy)
        if policy not in SNAPSHOT_POLICIES:
            raise config.error("snapshots.policy", f"must be one of {', '.join(SNAPSHOT_POLICIES)}, not {policy!r}")
        columns = config["features.columns"]
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise config.error("features.columns", "must be a non-empty list of column names")
        delay = whole_number(config, "features.label_delay_windows", cls.label_delay_windows, minimum=0)
        empty = EmptyWindows.from_config(config)
        safety = SafetySettings.from_config(config)
        shards = whole_number(config, "learner.shards", cls.shards, minimum=1)
        cache_keys = whole_number(config, "learner.state_cache_keys", cls.state_cache_keys, minimum=0)
        write_every = whole_number(config, "learner.state_write_every", cls.state_write_every, minimum=1)
        bootstrap = config.get("learner.bootstrap", "none")
        if bootstrap not in BOOTSTRAP_MODES:
            raise config.error("learner.bootstrap", f"must be one of {', '.join(BOOTSTRAP_MODES)}, not {bootstrap!r}")
        template = safety.cold_start.template
        signing = SigningSettings.from_config(config)
        classes = declared_classes(config)
        return cls(
            model=config["model"],
            metric=config["metric"],
            feature_names=tuple(columns),
            window_ms=int(float(config["window.size_seconds"]) * 1000),
            label_delay_windows=delay,
            max_pending_windows=int(config.get("features.max_pending_windows", cls.max_pending_windows)),
            empty_window_label=empty.label,
            snapshot_policy=policy,
            snapshot_every_n=int(config.get("snapshots.every_n_updates", cls.snapshot_every_n)),
            snapshot_every_ms=int(float(config.get("snapshots.every_seconds", cls.snapshot_every_ms / 1000)) * 1000),
            snapshot_max_wait_ms=int(
                float(config.get("snapshots.max_wait_seconds", cls.snapshot_max_wait_ms / 1000)) * 1000
            ),
            safety=safety,
            shards=shards,
            state_cache_keys=cache_keys,
            state_write_every=write_every,
            idle_ttl_ms=idle_ttl_ms(config),
            bootstrap_from=(
                (config["kafka.bootstrap_servers"], config["topics.snapshots.name"])
                if bootstrap == "snapshots"
                else None
            ),
            prior_template=(
                load_template(config.file_path(template), columns, config.error, signing.keyring(config.error), classes)
                if template
                else None
            ),
            # Submit time: a job started afresh outranks every model of the jobs before it in serving.
            generation=time.time_ns() // 1_000_000,
            signing=signing,
            model_classes=classes,
        )
