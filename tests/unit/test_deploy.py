"""The Kubernetes files (deploy/kubernetes/) cannot run here (no Docker, no Kubernetes); what they name can
be checked: the PythonDriver jar and class of this PyFlink, the Flink version, the job module and its
arguments, the image's paths and the connector version the local stack uses."""

import importlib
import os
import re
import zipfile

import pyflink
import pyflink.version
import yaml

from jobs.learner_job import main as learner_main  # noqa: F401 - the module -pym runs must import
from tests.unit.models import PROJECT_DIR

DEPLOY = os.path.join(PROJECT_DIR, "deploy", "kubernetes")


def manifest() -> dict:
    with open(os.path.join(DEPLOY, "flinkdeployment.yaml")) as f:
        return yaml.safe_load(f)


def dockerfile() -> str:
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        return f.read()


def test_the_entry_point_is_this_pyflinks_python_driver():
    spec = manifest()["spec"]
    major, minor, _ = pyflink.version.__version__.split(".")
    assert spec["flinkVersion"] == f"v{major}_{minor}"
    jar = spec["job"]["jarURI"].removeprefix("local:///opt/flink/opt/")
    # The official image's opt/ is the distribution's, as PyFlink's own copy of it.
    local_jar = os.path.join(os.path.dirname(pyflink.__file__), "opt", jar)
    assert os.path.exists(local_jar), f"{jar} is not this Flink's flink-python jar"
    class_file = spec["job"]["entryClass"].replace(".", "/") + ".class"
    assert class_file in zipfile.ZipFile(local_jar).namelist()
    assert "ENABLE_BUILT_IN_PLUGINS" in yaml.safe_dump(spec["podTemplate"])
    plugin = spec["podTemplate"]["spec"]["containers"][0]["env"][0]["value"]
    assert plugin == f"flink-s3-fs-presto-{pyflink.version.__version__}.jar"


def test_the_job_arguments_name_the_learner_module_and_a_config_beside_the_images_sql():
    spec = manifest()["spec"]
    args = spec["job"]["args"]
    options = dict(zip(args[0::2], args[1::2]))
    module = options["-pym"]
    assert importlib.import_module(module).main is learner_main
    # PyFlink's options come before the job's own.
    assert args.index("-pym") < args.index("--config")
    config = options["--config"]
    mounts = {m["name"]: m["mountPath"] for m in spec["podTemplate"]["spec"]["containers"][0]["volumeMounts"]}
    assert os.path.dirname(config) == mounts["config"]
    # A config's DDL and key paths are relative to the folder above its own: /opt/realtime, the image's
    # project folder, where the Secret holds run/keys/ as conf/job.yaml's signing.keys expects.
    base = os.path.dirname(os.path.dirname(config))
    assert base == "/opt/realtime" and mounts["signing"] == f"{base}/run/keys"
    with open(os.path.join(PROJECT_DIR, "conf", "job.yaml")) as f:
        assert yaml.safe_load(f)["signing"]["keys"]["local"] == "run/keys/snapshots.key"
    python = options["-pyexec"]
    configuration = spec["flinkConfiguration"]
    assert (
        python
        == options["-pyclientexec"]
        == configuration["python.executable"]
        == configuration["python.client.executable"]
    )
    assert (
        configuration["python.pythonpath"] == f"{os.path.dirname(os.path.dirname(python))}/lib/python3.11/site-packages"
    )


def test_the_image_holds_the_project_the_venv_and_the_jars_the_local_stack_uses():
    text = dockerfile()
    copied = set(re.findall(r"^COPY (\w+) /opt/realtime/\1$", text, re.M))
    assert {"jobs", "udfs", "serving", "conf", "sql"} <= copied
    assert "python3.11 -m venv /opt/venv" in text and "pip install --no-cache-dir '/opt/realtime[job]'" in text
    with open(os.path.join(PROJECT_DIR, "scripts", "maven", "flink-jars.xml")) as f:
        version = re.search(r"<flink.kafka.connector.version>(.+)</flink.kafka.connector.version>", f.read())[1]
    assert f"ARG KAFKA_CONNECTOR_VERSION={version}" in text
    assert "COPY java /build/java" in text and "realtime-learning-functions.jar /opt/flink/lib/" in text
    # The functions use flink-python's shaded Pickle classes: compiled against opt/, loaded from lib/.
    assert (
        '-cp "/opt/flink/lib/*:/opt/flink/opt/*"' in text
        and "cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/" in text
    )
    major, minor, _ = pyflink.version.__version__.split(".")
    assert re.search(rf"^ARG FLINK_IMAGE=flink:{major}\.{minor}\b", text, re.M)
