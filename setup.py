"""Real-time model updates with PyFlink and River: the job, its UDFs and the serving replicas."""

from setuptools import find_packages, setup

# apache-flink 2.3.0 pins numpy (through Beam), which caps river at 0.23.x and cloudpickle at 2.2.x.
INSTALL_REQUIRES = [
    "apache-flink==2.3.0",
    "river==0.23.0",
    "kafka-python==3.0.12",
    # kafka-python checks every record batch's CRC-32C, in pure Python (about 9 MB/s) unless this is
    # installed: a replica following 1,000 snapshots a second spent most of its time there.
    "crc32c==2.9.post0",
    "cloudpickle==2.2.1",
    "pyarrow==16.1.0",
    "PyYAML==6.0.4",
    # The demo plots freshness and rank over time.
    "matplotlib==3.9.4",
    # Serving replicas answer HTTP with uvicorn on uvloop, parsing with httptools (serving/asgi_server.py);
    # uvicorn's own requirements pinned too, so that a replica's stack is the one measured.
    "uvicorn==0.54.0",
    "httptools==0.9.0",
    "uvloop==0.23.0",
    "h11==0.16.0",
    "click==8.5.1",
]

setup(
    name="realtime-learning",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "serving", "serving.*"]),
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["serving-replica = serving.replica:main"]},
    extras_require={
        "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0"],
    },
)
