#!/usr/bin/env bash
# Installs the Debian packages the tests drive (real clients and PostgreSQL),
# only those missing, so a warm machine pays nothing. Needs root (CI is root).
#   scripts/system-deps.sh            everything the tests need
#   scripts/system-deps.sh --runtime  only what the server itself uses (libisal2),
#                                     and only where it can: never an error
set -euo pipefail
need=()
# ISA-L computes the erasure code ~9x faster than zfec alone (erasure/_isal.py).
[ -n "$(ldconfig -p 2>/dev/null | grep 'libisal\.so\.2 ' || true)" ] || need+=(libisal2)
if [ "${1:-}" = "--runtime" ]; then
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "kurastore: installing ${need[*]} from Debian" >&2
            (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
             apt-get install -y -qq --no-install-recommends "${need[@]}") >&2 || \
                echo "kurastore: could not install ${need[*]}; the codec uses zfec alone" >&2
        else
            echo "kurastore: ${need[*]} missing; the codec uses zfec alone (slower)" >&2
        fi
    fi
    exit 0
fi
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v s3cmd >/dev/null 2>&1 || need+=(s3cmd)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# The Spark client test (tests/clients/spark): Java 17 runs it, Maven fetches hadoop-aws.
ls /usr/lib/jvm/java-17-openjdk-*/bin/java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
# The Java SDK test (tests/clients/java) compiles its program: the JDK's javac.
ls /usr/lib/jvm/java-17-openjdk-*/bin/javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "kurastore: missing system packages: ${need[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "kurastore: installing ${need[*]} from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
