#!/usr/bin/env bash
# Build govmomi's vCenter simulator (our main in tests/vsphere/vcsim) into data/vcsim.
#
# Needs Debian's golang-go and golang-github-vmware-govmomi-dev; says so and exits 3 when
# they are missing, so callers can tell "not installed" from "build broken".
#
# The simulator package gets one patch first (tests/vsphere/vcsim/*.patch): a copy of it,
# patched, goes in a GOPATH of our own that Go searches before Debian's.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=data/vcsim
here=tests/vsphere/vcsim
upstream=/usr/share/gocode/src/github.com/vmware/govmomi/simulator
if ! command -v go >/dev/null || [ ! -d "$upstream" ]; then
    echo "vcsim: needs Debian packages golang-go and golang-github-vmware-govmomi-dev" >&2
    exit 3
fi
if [ -x "$out" ] && [ -z "$(find "$here" -newer "$out" -type f)" ]; then
    exit 0  # built from the current sources already
fi
mkdir -p data
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/src/github.com/vmware/govmomi"
# Go takes a package from the first GOPATH entry holding its folder, so the overlay's
# govmomi folder links to everything of Debian's but the simulator, which is a copy.
for entry in "$(dirname "$upstream")"/*; do
    [ "$entry" = "$upstream" ] || ln -s "$entry" "$overlay/src/github.com/vmware/govmomi/"
done
cp -r "$upstream" "$overlay/src/github.com/vmware/govmomi/simulator"
for fix in "$here"/*.patch; do
    patch --quiet -p1 -d "$overlay/src/github.com/vmware/govmomi/simulator" <"$fix"
done
GOPATH="$overlay:/usr/share/gocode" GO111MODULE=off GOFLAGS= go build -o "$out.tmp" "./$here"
mv "$out.tmp" "$out"
echo "vcsim: built $out"
