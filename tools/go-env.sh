# Sourced by the Go builds (tools/k8s-testbin/build.sh, tests/clients/go/setup.sh): one
# toolchain setting and one module and build cache under the kurastore cache dir, so the
# builds share what they download and compile, and a CI machine keeps one directory.
# Sets `cache`.
cache="${KURASTORE_CACHE:-$HOME/.cache/kurastore}"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
