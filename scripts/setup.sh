#!/usr/bin/env bash
# Sets up a fresh machine: .venv with the package, the Flink Kafka connector and the Kafka broker jars,
# the SQL client's gateway jar and the job's Java SQL functions.
# Needs Python 3.11 or 3.12 (3.11 when both are found, or PYTHON=/path/to/python), Java 17+ and Maven; downloads
# only from PyPI and Maven Central.
# Idempotent: a second run with nothing changed takes a few seconds.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

supported="Python ${SUPPORTED_PYTHONS// / or }"
if [ -n "${PYTHON:-}" ]; then
  version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    die "PYTHON=$PYTHON does not run. Set PYTHON to a $supported."
  [[ " $SUPPORTED_PYTHONS " == *" $version "* ]] ||
    die "PYTHON=$PYTHON is Python $version; apache-flink 2.3 and this package need $supported (setup.py)."
else
  for version in $SUPPORTED_PYTHONS; do PYTHON=$(find_python "$version") && break; done
  [ -n "$PYTHON" ] || die "no $supported found (as python3.X on PATH or under pyenv). Install one or set PYTHON=/path/to/python."
fi
command -v java >/dev/null ||
  die "Java not found. Install a JDK 17 (e.g. 'apt-get install openjdk-17-jdk-headless') and put 'java' on PATH."
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/ *java.specification.version = //p')
[ "${java_major:-0}" -ge 17 ] 2>/dev/null ||
  die "Java $java_major found; Flink 2.3 and Kafka 4 need Java 17 or newer."
command -v javac >/dev/null ||
  die "javac not found. Install a JDK, not only a JRE (e.g. 'apt-get install openjdk-17-jdk-headless'): setup compiles java/."
command -v mvn >/dev/null ||
  die "Maven not found. Install it (e.g. 'apt-get install maven'); it fetches the Kafka broker and Flink connector jars."
command -v envsubst >/dev/null ||
  die "envsubst not found. Install it (e.g. 'apt-get install gettext-base'); the scripts render conf/ templates with it."

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

# An existing .venv is kept, whichever supported Python it has; remove it to switch.
if [ -x .venv/bin/python ]; then
  version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [[ " $SUPPORTED_PYTHONS " == *" $version "* ]] ||
    die ".venv has Python $version; this package needs $supported. Remove .venv and run setup again."
fi
ensure_venv .venv "$PYTHON" "[job,demo,dev]"

jar_stamp=$(stamp scripts/maven/*.xml)
if [ "$(cat lib/.resolved 2>/dev/null)" != "$jar_stamp" ]; then
  echo "setup: resolving jars from Maven Central"
  rm -rf lib
  mvn --batch-mode --quiet -f scripts/maven/flink-jars.xml dependency:copy-dependencies ||
    die "Maven could not resolve the Flink Kafka connector (scripts/maven/flink-jars.xml)"
  mvn --batch-mode --quiet -f scripts/maven/kafka-broker.xml dependency:copy-dependencies ||
    die "Maven could not resolve the Kafka broker (scripts/maven/kafka-broker.xml)"
  mvn --batch-mode --quiet -f scripts/maven/history-jars.xml dependency:copy-dependencies ||
    die "Maven could not resolve the Parquet format and Hadoop client (scripts/maven/history-jars.xml)"
  mvn --batch-mode --quiet -f scripts/maven/flink-sql-client.xml dependency:copy-dependencies ||
    die "Maven could not resolve the SQL gateway jar of the SQL client (scripts/maven/flink-sql-client.xml)"
  echo "$jar_stamp" >lib/.resolved
fi

# The job's Java SQL functions (java/), compiled against the Flink that runs them.
functions_jar=lib/flink/realtime-learning-functions.jar
java_stamp=$(stamp $(find java -name '*.java' | sort))
if [ ! -f "$functions_jar" ] || [ "$(cat lib/.functions 2>/dev/null)" != "$java_stamp" ]; then
  echo "setup: compiling the job's Java SQL functions (java/)"
  classes=$(mktemp -d)
  # opt/ too: flink-python's jar, whose shaded Pickle reader and writer the learner's record functions
  # use, is copied into lib/ below, after this.
  javac --release 17 -nowarn -cp "$(flink_home)/lib/*:$(flink_home)/opt/*" -d "$classes" $(find java -name '*.java') ||
    die "the Java SQL functions in java/ do not compile"
  jar --create --file "$functions_jar" -C "$classes" .
  rm -rf "$classes"
  echo "$java_stamp" >lib/.functions
fi

# The local key that signs snapshot envelopes (conf/*.yaml, signing.keys): random, readable by this user
# only, never committed (run/ is git-ignored). A real deployment names its own secret's file instead.
signing_key=run/keys/snapshots.key
if [ ! -s "$signing_key" ]; then
  echo "setup: creating the local snapshot signing key $signing_key"
  mkdir -p "$(dirname "$signing_key")" && chmod 700 "$(dirname "$signing_key")"
  (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' >"$signing_key")
fi

# The Flink client, the cluster and local mini-clusters all load connectors from the distribution's lib/.
# flink-python goes there too: loaded per job from opt/, it leaks metaspace with every submission.
flink_lib="$(flink_home)/lib"
for jar in lib/flink/*.jar "$(flink_home)"/opt/flink-python-*.jar; do
  cmp -s "$jar" "$flink_lib/$(basename "$jar")" || cp "$jar" "$flink_lib/"
done
# The SQL client's gateway jar goes into opt/, where bin/sql-client.sh alone looks for it.
for jar in lib/flink-opt/*.jar; do
  cmp -s "$jar" "$(flink_home)/opt/$(basename "$jar")" || cp "$jar" "$(flink_home)/opt/"
done
echo "setup: ready ($(.venv/bin/python -c 'import pyflink.version as v; print("apache-flink", v.__version__)'), $(ls lib/kafka | sed -n 's/^kafka_2.13-\(.*\).jar/kafka \1/p'))"
