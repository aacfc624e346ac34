#!/usr/bin/env bash
# Build govmomi's vCenter simulator (our main in tests/vsphere/vcsim) into data/vcsim.
# Needs Debian's golang-go and golang-github-vmware-govmomi-dev; prints why when they are
# missing and exits 3, so callers can tell "not installed" from "build broken".
set -euo pipefail
cd "$(dirname "$0")/../.."
out=data/vcsim
src=tests/vsphere/vcsim/main.go
govmomi=/usr/share/gocode/src/github.com/vmware/govmomi/simulator
if ! command -v go >/dev/null || [ ! -d "$govmomi" ]; then
    echo "vcsim: needs Debian packages golang-go and golang-github-vmware-govmomi-dev" >&2
    exit 3
fi
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then
    exit 0
fi
mkdir -p data
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= go build -o "$out.tmp" ./tests/vsphere/vcsim
mv "$out.tmp" "$out"
echo "vcsim: built $out"
