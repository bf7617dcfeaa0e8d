#!/usr/bin/env bash
# Prepares the Java client of tests/clients/test_java_sdk.py and prints its directory:
#   classpath.txt   the AWS SDK for Java v2 S3 client and its HTTP clients, from Maven
#                   Central (pom.xml, versions from the SDK's BOM)
#   classes/        S3Job.java compiled (javac from Java 17)
#   versions        sdk= as resolved
# Cached in ${KURASTORE_CACHE:-~/.cache/kurastore}/javasdk-<hash of both files and the
# JDK>; Maven's repository is $cache/javasdk-m2. Only the first run downloads (~40 MB);
# concurrent runs wait for the first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
java_home="${JAVA_HOME:?set JAVA_HOME to a Java 17 JDK}"
key="$( (cat "$here/pom.xml" "$here/S3Job.java"; "$java_home/bin/javac" -version 2>&1) \
    | sha256sum | cut -c1-12)"
dir="$cache/javasdk-$key"
mkdir -p "$cache"
exec 9>"$cache/.javasdk-$key.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
    echo "kurastore: preparing $dir (first run only)" >&2
    # Maven's repository is shared by every key: an interrupted download resumes, and a
    # change to S3Job.java alone downloads nothing.
    rm -rf "$dir/classes" "$dir/classpath.txt"
    mkdir -p "$dir/classes"
    # -C: fail on a checksum mismatch (Maven checks each file's .sha1 from Central).
    JAVA_HOME="$java_home" mvn -B -q -C -Dstyle.color=never -f "$here/pom.xml" \
        -Dmaven.repo.local="$cache/javasdk-m2" dependency:build-classpath \
        -Dmdep.includeScope=runtime -Dmdep.outputFile="$dir/classpath.txt" >&2
    "$java_home/bin/javac" -d "$dir/classes" -cp "$(cat "$dir/classpath.txt")" \
        "$here/S3Job.java" >&2
    sdk="$(tr ':' '\n' < "$dir/classpath.txt" | sed -n 's|.*/s3/\([^/]*\)/s3-.*\.jar$|\1|p')"
    printf 'sdk=%s\n' "$sdk" > "$dir/versions"
    touch "$dir/.complete"
fi
flock -u 9
echo "$dir"
