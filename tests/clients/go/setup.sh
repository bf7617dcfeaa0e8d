#!/usr/bin/env bash
# Builds the Go clients of tests/clients/test_go_clients.py from the Go module proxy,
# pinned by go.mod/go.sum next to this script, and prints their directory:
#   mc       the MinIO client (github.com/minio/mc, a `tool` of go.mod)
#   s5cmd    github.com/peak/s5cmd/v2 (a `tool` of go.mod)
#   gosdk    gosdk/main.go: the AWS SDK for Go v2 at its default settings
# Binaries go to ${KURASTORE_CACHE:-~/.cache/kurastore}/goclients-<hash of the module,
# the program and the Go version>, built once (minutes: mc is large); later calls
# find `.done` and only print the directory. The module and build caches live under
# the same cache dir, as tools/k8s-testbin/build.sh keeps them. stdout carries only
# the directory; progress goes to stderr.
#
#   tests/clients/go/setup.sh --bootstrap   re-pins go.mod/go.sum (maintainers)
set -euo pipefail
MC=v0.0.0-20250313080218-cf909e1063a9  # mc has no semver tags: RELEASE.2025-03-12
S5CMD=v2.3.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
. "$here/../../../tools/go-env.sh"  # GOTOOLCHAIN, GOMODCACHE, GOCACHE and `cache`
cd "$here"

if [ "${1:-}" = "--bootstrap" ]; then
    # Modules, not `go install pkg@version`: the proxy lists no versions of s5cmd, and
    # `go install` looks that list up (for deprecations) and gives up.
    rm -f go.mod go.sum
    go mod init kurastore.dev/goclients >&2
    go get -tool "github.com/minio/mc@$MC" "github.com/peak/s5cmd/v2@$S5CMD" >&2
    go mod tidy >&2
fi

key="$( (cat go.mod go.sum gosdk/main.go; go version) | sha256sum | cut -c1-12)"
out="$cache/goclients-$key"
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.goclients-$key.lock"
flock 9  # one builder; concurrent runs wait for it
if [ ! -f "$out/.done" ]; then
    start=$(date +%s)
    echo "goclients: building mc, s5cmd and gosdk into $out (first run only)" >&2
    mkdir -p "$out"
    go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/" \
        github.com/minio/mc github.com/peak/s5cmd/v2 ./gosdk >&2
    touch "$out/.done"
    echo "goclients: built in $(( $(date +%s) - start )) s" >&2
fi
flock -u 9
echo "$out"
