#!/usr/bin/env bash
# Source this: makes (or reuses) the project's virtualenv outside the repository,
# keyed by the Python version and a hash of pyproject.toml, and activates it.
# The venv is cached in ${KURASTORE_CACHE:-~/.cache/kurastore}, so warm runs skip pip.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
py="${PYTHON:-python3}"
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# Keyed by the declared dependencies only, so editing tool settings in
# pyproject.toml does not rebuild the environment.
key="$("$py" - "$repo/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", [])
print(hashlib.sha256("\n".join(deps).encode()).hexdigest()[:12])
PY
)"
venv="$cache/venv-py$pyver-$key"
mkdir -p "$cache"
# One builder at a time: parallel test runs wait for the first to finish.
exec 9>"$cache/.venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    echo "kurastore: preparing $venv (first run only)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip setuptools wheel >&2
    "$venv/bin/pip" install --quiet -e "$repo[test]" >&2
    touch "$venv/.complete"
fi
flock -u 9
# The editable install points at whichever checkout installed it last: repoint it here
# (-P: the current directory, often the checkout itself, must not answer the import).
if ! "$venv/bin/python" -P -c "import kurastore, os, sys; sys.exit(os.path.dirname(os.path.dirname(kurastore.__file__)) != sys.argv[1])" "$repo" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --no-deps -e "$repo" >&2
fi
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
# Never let the current directory shadow a module (a folder named operator/ exists here).
export PYTHONSAFEPATH=1
