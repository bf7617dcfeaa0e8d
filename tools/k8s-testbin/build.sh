#!/usr/bin/env bash
# Builds the real Kubernetes control plane the k8s test tier runs against:
# kube-apiserver and kube-controller-manager (k8s.io/kubernetes) and etcd
# (go.etcd.io/etcd/server/v3), all from the Go module proxy, pinned by the
# go.mod/go.sum next to this script. Binaries go to a cache outside the work
# tree, keyed by the Kubernetes version and a hash of go.sum, and are built
# once: a later call finds `.done` and only prints the directory.
#
#   tools/k8s-testbin/build.sh            -> prints the binary directory
#   tools/k8s-testbin/build.sh --bootstrap   regenerates go.mod/go.sum (maintainers)
#
# The module and build caches also live under the kurastore cache dir so a CI
# machine can keep that one directory between runs. Progress goes to stderr;
# stdout carries only the directory.
set -euo pipefail
K8S=1.36.3
STG=0.36.3
ETCD=v3.6.16
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
. "$here/../go-env.sh"  # GOTOOLCHAIN, GOMODCACHE, GOCACHE and `cache`
cd "$here"

if [ "${1:-}" = "--bootstrap" ]; then
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
    # them with ./staging paths; a dependency's replaces are ignored, so the
    # main module must point each one at its published v0.X.Y tag.
    rm -f go.mod go.sum
    go mod init kurastore.dev/k8s-testbin >&2
    kmod="$(go mod download -json "k8s.io/kubernetes@v$K8S" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    for m in $(grep -E '=> \./staging/' "$kmod" | awk '{print $1}' | sort -u); do
        go mod edit -replace="$m=$m@v$STG"
    done
    go get "k8s.io/kubernetes@v$K8S" >&2
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S" \
        "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S" \
        "go.etcd.io/etcd/server/v3@$ETCD" >&2
    go mod tidy >&2
fi

sum="$(sha256sum go.sum | cut -c1-12)"
out="$cache/k8s-testbin/v$K8S-$sum"
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

mkdir -p "$out"
minor="$(echo "$K8S" | cut -d. -f2)"
ver="k8s.io/component-base/version"
ldf="-s -w -X $ver.gitVersion=v$K8S -X $ver.gitMajor=1 -X $ver.gitMinor=$minor"
ldf="$ldf -X $ver.gitTreeState=clean"
start=$(date +%s)
echo "k8s-testbin: building kube-apiserver, kube-controller-manager, etcd into $out" >&2
go build -mod=readonly -trimpath -ldflags "$ldf" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >&2
go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2
"$out/kube-apiserver" --version >&2
"$out/kube-controller-manager" --version >&2
"$out/etcd" --version >&2
touch "$out/.done"
echo "k8s-testbin: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
