"""Golden bytes: a key's learner state and a snapshot envelope exactly as each release wrote them.

Each release here trains the project's default model (`model` and `metric` in conf/job.yaml:
StandardScaler | LogisticRegression with SGD at lr 0.05, LogLoss) for key `golden` on the same 40
feature rows, one per 10 s window, through its own `Learner`, publishing every 10 updates as the job
does, and writes to this folder:

- `<label>.state`: the key's `KeyState` as the Flink learner stores it in that release
  (`Types.PICKLED_BYTE_ARRAY` state: PyFlink keeps `pickle.dumps(state)` in thread and process mode
  alike), after the 40th row and its snapshot;
- `<label>.envelope`: the envelope that release published for version 40, as it is on the snapshot
  topic (from format 3 signed with tests/unit/signing-test.key, key id `test`);
- `<label>.json`: what that release's own code makes of them: the state's counters and metric, the
  predictions of the state's and the envelope's model on fixed probe rows, then the predictions,
  counters and probe predictions after it learns 20 more rows (windows 41..60) from the stored state.

tests/unit/test_golden_bytes.py restores every state and envelope here with the current code and
checks it predicts and learns on identically, or refuses the envelope with the reason it must.

| label | commit | KeyState | envelope | what is special |
| --- | --- | --- | --- | --- |
| schema1-format1-9079a12 | 9079a12 | 1 | 1 | first learner: one key per Flink key, no `replayed_windows` yet |
| schema1-format1-cc933bf | cc933bf | 1 | 1 | last commit of format 1 (cloudpickled payload), with `replayed_windows` |
| schema1-format2-1f677f9 | 1f677f9 | 1 | 2 | last commit of schema 1; format 2 with a cloudpickled payload |
| schema2-format2-16af45f | 16af45f | 2 | 2 | last commit of schema 2 and of format 2 (pickled payload, unsigned) |
| schema3-format3-4941694 | 4941694 | 3 | 3 | first signed release; its state still has `pending_timer_ms` (see below) |
| schema3-format3-b230bc9 | b230bc9 | 3 | 3 | a later format 3 release (no feature types: read as numbers) |
| schema3-format4-0b2107f | 0b2107f | 3 | 4 | the current schema and format: the envelope names each feature's type |

KeyState's `pending_timer_ms`, still in the state of schema3-format3-4941694, is gone at 40b81f8.

Regenerate one release's files (the current release needs no worktree: PYTHONPATH=.), from the
project folder:

    git worktree add --detach /tmp/old-cc933bf cc933bf
    PYTHONPATH=/tmp/old-cc933bf .venv/bin/python tests/golden/make_golden.py
    git worktree remove /tmp/old-cc933bf

or every release in the table with `.venv/bin/python tests/golden/make_golden.py --all` (it adds and
removes the worktrees itself). The bytes are deterministic: regenerating a release rewrites the same
files. When KeyState's schema or the envelope's format changes, run it for the new release, add its
row above and to RELEASES, and commit the three new files; the old ones stay as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(os.path.dirname(HERE))
RELEASES = ("9079a12", "cc933bf", "1f677f9", "16af45f", "4941694", "b230bc9", "0b2107f")

KEY = "golden"
# conf/job.yaml's model and metric (the same in every release above).
MODEL = {
    "steps": [
        {"class": "preprocessing.StandardScaler"},
        {
            "class": "linear_model.LogisticRegression",
            "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.05}}},
        },
    ]
}
METRIC = {"class": "metrics.LogLoss"}
FEATURES = ("x1_avg", "x2_avg")
WINDOW_MS = 10_000
EVERY_N = 10
GENERATION = 1_700_000_000_000
TRAINED_ROWS = 40
MORE_ROWS = 20
SIGNING_KEY_ID = "test"
SIGNING_KEY_FILE = os.path.join(PROJECT_DIR, "tests", "unit", "signing-test.key")
PROBES = [{"x1_avg": x1, "x2_avg": x2} for x1 in (-3.0, 0.0, 2.5) for x2 in (-1.0, 0.5, 4.0)]


def rows(first: int, count: int) -> list:
    """(window_end_ms, features, label) for windows first..first+count-1: fixed numbers, no randomness.

    >>> rows(1, 2)
    [(10000, {'x1_avg': 1.932653, 'x2_avg': 1.034998}, True), (20000, {'x1_avg': 2.956349, 'x2_avg': -1.213778}, True)]
    """
    out = []
    for w in range(first, first + count):
        x = {"x1_avg": round(3 * math.sin(w * 0.7), 6), "x2_avg": round(2 * math.cos(w * 1.3) + 0.5, 6)}
        out.append((w * WINDOW_MS, x, x["x1_avg"] - 0.8 * x["x2_avg"] + 0.3 * math.sin(w * 2.9) > 0))
    return out


def number(y_pred):
    """A prediction as one number, as every release's `as_number` does."""
    if isinstance(y_pred, dict):
        return float(y_pred.get(True, 0.0)) if y_pred else None
    return None if y_pred is None else float(y_pred)


def prediction_of(step):
    """The number a release's `Learner.process` returned: a Prediction (schema 1), a Step, or None."""
    predicted = getattr(step, "prediction", None)
    return number(getattr(predicted, "prediction", predicted)) if predicted is not None else None


def learner_of_this_release():
    """This release's Learner with the settings above, and its keyring (None before signing)."""
    from udfs import learner as module

    fields = {f.name for f in dataclasses.fields(module.LearnerSettings)}
    settings = dict(
        model=MODEL,
        metric=METRIC,
        feature_names=FEATURES,
        window_ms=WINDOW_MS,
        snapshot_policy="every_n_updates",
        snapshot_every_n=EVERY_N,
    )
    keyring = None
    if "generation" in fields:
        settings["generation"] = GENERATION
    if "signing" in fields:
        from udfs.signing import SigningSettings

        signing = SigningSettings(((SIGNING_KEY_ID, SIGNING_KEY_FILE),), SIGNING_KEY_ID)
        settings["signing"], keyring = signing, signing.keyring()
    settings = module.LearnerSettings(**{k: v for k, v in settings.items() if k in fields})
    takes_keyring = "keyring" in inspect.signature(module.Learner.__init__).parameters
    return (module.Learner(settings, keyring) if takes_keyring else module.Learner(settings)), keyring


def publish(learner, state, window_end_ms: int):
    """The envelope the job would publish now: `publish` since schema 2, `snapshot` before. Fixed
    watermark and emit time, so that the bytes are the same on every run."""
    make = getattr(learner, "publish", None) or learner.snapshot
    return make(KEY, state, window_end_ms, window_end_ms + 500)


def decoded_model(envelope: bytes, keyring):
    """The envelope's model, as this release's readers load it."""
    from udfs import envelope as codec

    snapshot = codec.decode(envelope, keyring) if keyring is not None else codec.decode(envelope)
    return snapshot.model()


def probe(model) -> list:
    return [number(model.predict_proba_one(x)) for x in PROBES]


def generate(out_dir: str, commit: str) -> str:
    from udfs import envelope as codec
    from udfs import learner as module

    learner, keyring = learner_of_this_release()
    state, envelope = learner.new_state(), None
    for window_end_ms, x, label in rows(1, TRAINED_ROWS):
        learner.process(state, x, label, window_end_ms)
        if learner.snapshot_due(state):
            envelope = publish(learner, state, window_end_ms)
    stored = pickle.dumps(state)  # what PyFlink's PICKLED_BYTE_ARRAY state holds
    label = f"schema{module.STATE_SCHEMA_VERSION}-format{codec.FORMAT_VERSION}-{commit}"

    restored = pickle.loads(stored)
    if hasattr(module, "migrate"):
        restored = module.migrate(restored)
    more = rows(TRAINED_ROWS + 1, MORE_ROWS)
    predictions = [prediction_of(learner.process(restored, x, y, end)) for end, x, y in more]
    expected = {
        "commit": commit,
        "state_schema": module.STATE_SCHEMA_VERSION,
        "envelope_format": codec.FORMAT_VERSION,
        "key": KEY,
        "model": MODEL,
        "metric": METRIC,
        "features": list(FEATURES),
        "window_ms": WINDOW_MS,
        "snapshot_every_n": EVERY_N,
        "generation": getattr(state, "generation", 0),
        "signing_key_id": SIGNING_KEY_ID if keyring is not None else None,
        "state": {
            "n_learned": state.n_learned,
            "model_version": state.model_version,
            "published_version": state.published_version,
            "last_window_end_ms": state.last_window_end_ms,
            "metric": state.metric.get(),
            "fields": sorted(vars(state)),
        },
        "probes": PROBES,
        "state_predictions": probe(pickle.loads(stored).model),
        "envelope": {
            "model_version": state.published_version,
            "window_end_ms": TRAINED_ROWS * WINDOW_MS,
            "predictions": probe(decoded_model(envelope, keyring)),
        },
        "more_rows": [{"window_end_ms": end, "features": x, "label": y} for end, x, y in more],
        "after_more_rows": {
            "predictions": predictions,
            "n_learned": restored.n_learned,
            "model_version": restored.model_version,
            "metric": restored.metric.get(),
            "probe_predictions": probe(restored.model),
        },
    }
    for suffix, data in ((".state", stored), (".envelope", envelope)):
        with open(os.path.join(out_dir, label + suffix), "wb") as f:
            f.write(data)
    with open(os.path.join(out_dir, label + ".json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    return label


def generate_all(out_dir: str) -> None:
    """Every release in RELEASES, each by its own code in a worktree of its own, removed afterwards."""
    for commit in RELEASES:
        with tempfile.TemporaryDirectory(prefix=f"old-{commit}-") as parent:
            tree = os.path.join(parent, "tree")
            subprocess.run(
                ["git", "-C", PROJECT_DIR, "worktree", "add", "--detach", tree, commit], check=True, capture_output=True
            )
            try:
                subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--out", out_dir, "--commit", commit],
                    check=True,
                    env={**os.environ, "PYTHONPATH": tree},
                )
            finally:
                subprocess.run(["git", "-C", PROJECT_DIR, "worktree", "remove", "--force", tree], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="folder to write to (default: this one)")
    parser.add_argument("--commit", help="the release's commit, for the file names (default: the code's HEAD)")
    parser.add_argument("--all", action="store_true", help="every release in RELEASES, each from a worktree")
    args = parser.parse_args(argv)
    if args.all:
        generate_all(args.out)
        return 0
    import udfs

    code = os.path.dirname(os.path.dirname(os.path.abspath(udfs.__file__)))
    commit = (
        args.commit
        or subprocess.run(
            ["git", "-C", code, "rev-parse", "--short=7", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    print(f"{generate(args.out, commit)}: written by the code in {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
