"""What the learner keeps per key, `KeyState`, and how a state from an older job version is read.

One Flink map-state entry holds a key's `KeyState`, pickled (udfs/learner_function.py). Its schema is
versioned: a savepoint of an older job version restores with the fields added since filled in by
`migrate`; one of a newer version stops the job rather than losing what the newer code keeps.

>>> old = KeyState(model=None, metric=None, n_learned=7)
>>> del old.held_version, old.generation   # as a schema 1 state restores: without the later fields
>>> old.schema_version = 1
>>> state = migrate(old)
>>> (state.n_learned, state.held_version, state.generation, state.schema_version == STATE_SCHEMA_VERSION)
(7, 0, 0, True)
>>> state.schema_version = STATE_SCHEMA_VERSION + 1
>>> migrate(state)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
udfs.key_state.StateSchemaError: learner state has schema version 4, this job reads up to 3:
submit the job version that wrote the savepoint, or a newer one
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the guards' classes, named for the reader only: a state unpickles them by their own modules
    from udfs.challenger import Duel
    from udfs.drift import DriftWatch
    from udfs.gate import GateState
    from udfs.quality import FeatureStats

# Raise it with every field added to KeyState, and add that release's golden state (tests/golden).
STATE_SCHEMA_VERSION = 3


@dataclasses.dataclass
class KeyState:
    """Everything the job knows about one key; one Flink ValueState holds it."""

    model: Any
    metric: Any
    n_learned: int = 0
    # Grows by one per update and never goes back, across restarts, resets and rollbacks alike.
    model_version: int = 0
    published_version: int = 0
    last_window_end_ms: int = 0
    # window end -> (features, prediction) of rows waiting for their delayed label.
    pending: dict = dataclasses.field(default_factory=dict)
    pending_dropped: int = 0
    # Rows for a window this key has already learned: a source replay after an upgrade, skipped.
    replayed_windows: int = 0
    unlabeled: int = 0
    schema_version: int = STATE_SCHEMA_VERSION
    # Since schema 2: the model version of the last snapshot the gate held back.
    held_version: int = 0
    # What the model started from: "" (untrained), "global" or "template".
    prior: str = ""
    drift: DriftWatch | None = None
    gate: GateState | None = None
    duel: Duel | None = None
    quality: FeatureStats | None = None
    # Since schema 3: the lineage of the key's model, the submit time (ms) of the job that created this
    # state (`LearnerSettings.generation`); kept on restore, 0 for states created before lineages.
    # Its envelopes carry it, and replicas order a key's envelopes by (generation, model_version).
    generation: int = 0


# A pickle names a class by its module: every savepoint before this module existed names
# `udfs.learner.KeyState`, which udfs/learner.py re-exports. States pickled now keep that name, so that
# a savepoint of this code also restores in the releases before the split (a deploy rolled back).
KeyState.__module__ = "udfs.learner"


class StateSchemaError(RuntimeError):
    """Keyed state written by a job version this code cannot read."""


def migrate(state: KeyState) -> KeyState:
    """Bring a KeyState restored from a savepoint of an older job version up to this one.

    Fields added since are filled with their defaults; state from a newer version is refused,
    because reading it with older code would silently drop what the newer code keeps."""
    version = getattr(state, "schema_version", 0)
    if version == STATE_SCHEMA_VERSION:
        return state
    if version > STATE_SCHEMA_VERSION:
        raise StateSchemaError(
            f"learner state has schema version {version}, this job reads up to {STATE_SCHEMA_VERSION}: "
            "submit the job version that wrote the savepoint, or a newer one"
        )
    for field in dataclasses.fields(KeyState):
        if field.name not in vars(state):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            setattr(state, field.name, default)
    state.schema_version = STATE_SCHEMA_VERSION
    return state
