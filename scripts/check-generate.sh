#!/bin/sh
# Fails when the committed bpf2go output (bpf/*_bpfel.go, *_bpfel.o) differs
# from what the C sources compile to. The committed files are restored
# either way; run `make generate` and commit to fix a mismatch.
set -eu
cd "$(dirname "$0")/.."
keep=$(mktemp -d)
trap 'cp "$keep"/* bpf/ && rm -rf "$keep"' EXIT
cp bpf/*_bpfel.go bpf/*_bpfel.o "$keep"/
(cd bpf && go generate ./...)
stale=""
for f in "$keep"/*; do
	cmp -s "$f" "bpf/$(basename "$f")" || stale="$stale bpf/$(basename "$f")"
done
if [ -n "$stale" ]; then
	echo "check-generate: generated BPF objects are stale:$stale" >&2
	echo "check-generate: run 'make generate' and commit the result" >&2
	exit 1
fi
echo "check-generate: generated BPF objects match the sources"
