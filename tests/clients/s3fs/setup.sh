#!/usr/bin/env bash
# Prepares the s3fs client of tests/clients/test_s3fs.py and prints its directory:
#   venv/   s3fs, pandas and pyarrow exactly as pinned in requirements.txt (every
#           package, so a release of any of them cannot change what is tested).
# s3fs pins aiobotocore, which pins botocore: it cannot share the main venv (newer
# boto3), so it gets its own, cached in ${KURASTORE_CACHE:-~/.cache/kurastore}/
# s3fs-<hash of requirements.txt and python>; concurrent runs wait for the first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
py="${PYTHON:-python3}"
key="$( (cat "$here/requirements.txt"; "$py" -V) | sha256sum | cut -c1-12)"
dir="$cache/s3fs-$key"
mkdir -p "$cache"
exec 9>"$cache/.s3fs-$key.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
    echo "kurastore: preparing $dir (first run only)" >&2
    rm -rf "$dir"
    "$py" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt" >&2
    touch "$dir/.complete"
fi
flock -u 9
echo "$dir"
