#!/usr/bin/env bash
# Prepares the Spark client of tests/clients/test_spark.py and prints its directory:
#   venv/           pyspark pinned in requirements.txt (kept out of the main venv: ~450 MB)
#   classpath.txt   hadoop-aws, the AWS SDK v2 bundle and spark-hadoop-cloud from Maven
#                   Central (pom.xml), for the Spark and Hadoop versions pyspark ships
#   versions        spark=, hadoop= as installed
# Cached in ${KURASTORE_CACHE:-~/.cache/kurastore}/spark-<hash of both files and python>,
# so only the first run downloads (~1.1 GB); concurrent runs wait for the first one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
py="${PYTHON:-python3}"
key="$( (cat "$here/requirements.txt" "$here/pom.xml"; "$py" -V) | sha256sum | cut -c1-12)"
dir="$cache/spark-$key"
mkdir -p "$cache"
exec 9>"$cache/.spark-$key.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
    echo "kurastore: preparing $dir (first run only, downloads ~1.1 GB)" >&2
    # m2/ (Maven's repository) is kept: an interrupted download resumes from there.
    rm -rf "$dir/venv" "$dir/classpath.txt"
    mkdir -p "$dir"
    "$py" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt" >&2
    spark="$("$dir/venv/bin/python" -c 'import pyspark; print(pyspark.__version__)')"
    jars="$("$dir/venv/bin/python" -c \
        'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
    # The S3A connector must be the Hadoop release pyspark bundles, not the newest one.
    hadoop="$(cd "$jars" && ls hadoop-client-api-*.jar | sed 's/^hadoop-client-api-\(.*\)\.jar$/\1/')"
    # -C: fail on a checksum mismatch (Maven checks each file's .sha1 from Central).
    mvn -B -q -C -Dstyle.color=never -f "$here/pom.xml" -Dspark.version="$spark" -Dhadoop.version="$hadoop" \
        -Dmaven.repo.local="$dir/m2" dependency:build-classpath \
        -Dmdep.includeScope=runtime -Dmdep.outputFile="$dir/classpath.txt" >&2
    printf 'spark=%s\nhadoop=%s\n' "$spark" "$hadoop" > "$dir/versions"
    touch "$dir/.complete"
fi
flock -u 9
echo "$dir"
