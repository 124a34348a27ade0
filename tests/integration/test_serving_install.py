"""The serving-only install: the package's wheel, installed without extras into a fresh venv, holds no
Flink, and its `serving-replica` command serves a model published on the real broker.

pip downloads from PyPI through its own cache (shared with the project's venv), so a second run is quick.
"""

import os
import shutil
import subprocess
import sys

import pytest

from scripts import stack
from tests.integration.test_serving_kafka import Publisher

# What the job and the demo extras bring and a serving host must not get.
NOT_FOR_SERVING = {"apache-flink", "apache-flink-libraries", "apache-beam", "pyarrow", "matplotlib", "pemja", "py4j"}


def run(*command, cwd=None, timeout=300) -> str:
    # Without PYTHONPATH: a developer's, pointing at the project folder, would import its code instead.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory):
    """A fresh venv holding the package's wheel installed without extras."""
    tmp = tmp_path_factory.mktemp("serving-install")
    # The wheel is built from a copy: building in the project folder would leave build/ and egg-info there.
    source = tmp / "source"
    for name in ("jobs", "udfs", "serving"):
        shutil.copytree(
            os.path.join(stack.PROJECT_DIR, name), source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(os.path.join(stack.PROJECT_DIR, "setup.py"), source)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp / "dist", source)
    (wheel,) = (tmp / "dist").glob("realtime_learning-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", wheel, timeout=480)
    return venv


@pytest.mark.timeout(600)
def test_the_base_install_holds_no_flink_and_imports_nothing_of_the_job(serving_venv):
    installed = {
        line.split("==")[0].lower()
        for line in run(serving_venv / "bin" / "pip", "list", "--format=freeze").splitlines()
    }
    assert "realtime-learning" in installed and "river" in installed
    assert not installed & NOT_FOR_SERVING
    # From the venv, not the project folder; and the replica's modules pull in nothing of the learner.
    probe = (
        "import sys, serving.replica; print(serving.replica.__file__); "
        "print(sorted(m for m in sys.modules if m.startswith(('udfs.learner', 'pyflink'))))"
    )
    module_file, job_modules = run(serving_venv / "bin" / "python", "-c", probe, cwd=serving_venv).splitlines()
    assert module_file.startswith(str(serving_venv))
    assert job_modules == "[]"


@pytest.mark.timeout(600)
def test_the_installed_serving_replica_serves_a_published_model(serving_venv, services, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the replica's code must come from its venv
    config = stack.isolated_config(tmp_path, "conf/job.yaml")
    publisher = Publisher(config)
    try:
        publisher.publish({"book-1": 5})
    finally:
        publisher.close()
    replica = stack.Replica(config, 18501, command=[str(serving_venv / "bin" / "serving-replica")])
    try:
        replica.wait_ready(timeout_s=60)
        assert replica.http("GET", "/healthz")[0] == 200
        features = dict(zip(config["features.columns"], (0.3, -0.2)))
        status, answer = replica.http("POST", "/predict", {"key": "book-1", "features": features})
        assert status == 200 and answer["model_version"] == 5
        # The model the job's envelope carried, unpickled by the base install's River, answers as River here.
        assert answer["prediction"] == pytest.approx(publisher.model(5).predict_proba_one(features)[True])
    finally:
        replica.stop()
