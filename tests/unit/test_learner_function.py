"""What the learner's Flink wrapper holds per shard between calls (udfs/learner_function.py ShardMemory),
without Flink: an expired key leaves nothing of it behind."""

from river import datasets

from tests.unit.models import KEYRING
from tests.unit.test_learner import settings
from udfs.due_keys import DueKeys
from udfs.empty_windows import PendingKeys
from udfs.idle_keys import IdleKeys
from udfs.learner import Learner
from udfs.learner_function import ShardMemory

DELAY_WINDOWS = 3


def shard_with_rows(learner: Learner, keys, windows: int) -> ShardMemory:
    """A shard's memory after `keys` had a row in each of `windows` windows, labels 3 windows late,
    indexed as LearnerFunction._learn and _after_learning index them, and the last window closed."""
    memory = ShardMemory(DueKeys(), learner.shard_prior(), PendingKeys(), IdleKeys())
    rows = iter(datasets.Bananas())
    for window in range(1, windows + 1):
        window_end_ms = window * 1000
        for key in keys:
            x, y = next(rows)
            state = memory.dirty.get(key) or memory.dirty.setdefault(key, learner.new_state())
            learner.process(state, x, y if window > DELAY_WINDOWS else None, window_end_ms)
            if window_end_ms in state.pending:
                memory.pending.add(window_end_ms + DELAY_WINDOWS * 1000, key)
            memory.idle.touch(key, window_end_ms)
            memory.due.add(key, window_end_ms + 500)
    memory.pending.pop_closed(windows * 1000)  # the watermark closed the label windows through the last
    return memory


def held(memory: ShardMemory) -> dict:
    """Every attribute of the shard's memory as text that names the keys it holds an entry for."""

    def text(value):
        if isinstance(value, dict):
            return repr(list(value))  # the keys only: a KeyState's text is long and names no key
        return repr(value.as_dict() if hasattr(value, "as_dict") else value)

    return {name: text(value) for name, value in vars(memory).items()}


def test_an_expired_key_leaves_no_entry_in_the_shard_memory_and_the_other_keys_keep_theirs():
    learner = Learner(settings(label_delay_windows=DELAY_WINDOWS), KEYRING)
    memory = shard_with_rows(learner, ("gone-key", "kept-key"), windows=6)
    # Expiry with a TTL shorter than the label delay: the key still has rows waiting for labels.
    assert {end for end, keys in memory.pending.as_dict().items() if "gone-key" in keys} == {7000, 8000, 9000}
    assert all("gone-key" in text for name, text in held(memory).items() if name in ("dirty", "due", "pending", "idle"))
    before = held(memory)

    memory.forget(("gone-key",))

    assert [name for name, text in held(memory).items() if "gone-key" in text] == []
    assert memory.pending.as_dict() == {7000: ["kept-key"], 8000: ["kept-key"], 9000: ["kept-key"]}
    assert (list(memory.dirty), list(memory.due.as_dict()), list(memory.idle.as_dict())) == (
        ["kept-key"],
        ["kept-key"],
        ["kept-key"],
    )
    # The label windows closing later find nothing of it: no entry, so no state read that would bring it back.
    assert [key for _, key in memory.pending.pop_closed(9000)] == ["kept-key"] * 3
    assert before["prior"] == held(memory)["prior"]


def test_forgetting_every_waiting_key_empties_the_delayed_label_index():
    learner = Learner(settings(label_delay_windows=DELAY_WINDOWS), KEYRING)
    memory = shard_with_rows(learner, ("a", "b"), windows=2)
    memory.forget(["a", "b"])
    assert (memory.pending.as_dict(), len(memory.pending), memory.dirty, len(memory.idle)) == ({}, 0, {}, 0)
