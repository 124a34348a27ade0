"""Real-time model updates with PyFlink and River: the job, its UDFs and the serving replicas."""

from setuptools import find_packages, setup

# The base install is what a serving replica needs (`pip install .`, the `serving-replica` command): no
# Flink, no Beam, no plotting. The job and the demo add theirs as extras: `pip install '.[job,demo]'`.
INSTALL_REQUIRES = [
    "river==0.23.0",
    # River's own requirements pinned to the versions the job runs with (apache-flink 2.3.0 pins numpy
    # through Beam, which caps river at 0.23.x): a replica unpickles the job's models with the same code.
    "numpy==2.1.3",
    "scipy==1.17.1",
    "pandas==2.2.3",
    # river 0.23.0 imports it (river/base/base.py) without requiring it; the job gets it through Beam.
    "typing_extensions==4.16.0",
    "kafka-python==3.0.12",
    # kafka-python checks every record batch's CRC-32C, in pure Python (about 9 MB/s) unless this is
    # installed: a replica following 1,000 snapshots a second spent most of its time there.
    "crc32c==2.9.post0",
    # The snapshot envelope (udfs/envelope.py) pickles models with it; Beam caps it at 2.2.x for the job.
    "cloudpickle==2.2.1",
    "PyYAML==6.0.4",
    # Serving replicas answer HTTP with uvicorn on uvloop, parsing with httptools (serving/asgi_server.py);
    # uvicorn's own requirements pinned too, so that a replica's stack is the one measured.
    "uvicorn==0.54.0",
    "httptools==0.9.0",
    "uvloop==0.23.0",
    "h11==0.16.0",
    "click==8.5.1",
]

EXTRAS_REQUIRE = {
    # The Flink job (jobs/, udfs/learner_function.py, scripts/submit.sh): PyFlink and its Arrow.
    "job": ["apache-flink==2.3.0", "pyarrow==16.1.0"],
    # The demo (scripts/demo.py) plots freshness and rank over time.
    "demo": ["matplotlib==3.9.4"],
    # The tests, and the linter scripts/test.sh runs first (ruff.toml).
    "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "ruff==0.17.6"],
}

setup(
    name="realtime-learning",
    version="0.1.0",
    description=__doc__,
    # apache-flink 2.3.0 publishes wheels for 3.11 and 3.12 (scripts/common.sh SUPPORTED_PYTHONS).
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "serving", "serving.*"]),
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["serving-replica = serving.replica:main"]},
    extras_require=EXTRAS_REQUIRE,
)
