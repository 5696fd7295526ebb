#!/bin/sh
# Fails when the committed bpf2go output (bpf/*_bpfel.go, *_bpfel.o) differs
# from what the C sources compile to with the pinned compiler
# (scripts/bpf-clang.env). The committed files are restored either way; run
# `make generate` and commit to fix a mismatch. With --write (make
# generate) the new output is kept instead.
#
# The objects are only reproducible with the same compiler, so a missing
# or different clang is an error that names the expected and the found one,
# before anything is compiled.
set -eu
cd "$(dirname "$0")/.."
. ./scripts/bpf-clang.env
cc="clang-$BPF_LLVM_MAJOR"
strip="llvm-strip-$BPF_LLVM_MAJOR"

# found describes a compiler: its first --version line, or that it is missing.
found() {
	if command -v "$1" >/dev/null 2>&1; then
		"$1" --version 2>/dev/null | head -n 1
	else
		echo "no $1"
	fi
}
have=$(found "$cc")
case "$have" in
*"clang version $BPF_CLANG_VERSION"*) ;;
*)
	echo "check-generate: the BPF objects are built with $cc $BPF_CLANG_VERSION (Debian 12's clang-$BPF_LLVM_MAJOR, scripts/bpf-clang.env)" >&2
	echo "check-generate: found: $have (clang: $(found clang)); install it with 'make deps'" >&2
	exit 1
	;;
esac
if ! command -v "$strip" >/dev/null 2>&1; then
	echo "check-generate: $strip not found (package llvm-$BPF_LLVM_MAJOR); install it with 'make deps'" >&2
	exit 1
fi

generate() {
	(cd bpf && BPF2GO_CC="$cc" BPF2GO_STRIP="$strip" go generate ./...)
}
if [ "${1:-}" = "--write" ]; then
	generate
	echo "check-generate: generated BPF objects with $have"
	exit 0
fi

keep=$(mktemp -d)
trap 'cp "$keep"/* bpf/ && rm -rf "$keep"' EXIT
cp bpf/*_bpfel.go bpf/*_bpfel.o "$keep"/
generate
stale=""
for f in "$keep"/*; do
	cmp -s "$f" "bpf/$(basename "$f")" || stale="$stale bpf/$(basename "$f")"
done
if [ -n "$stale" ]; then
	echo "check-generate: generated BPF objects are stale:$stale" >&2
	echo "check-generate: run 'make generate' and commit the result" >&2
	exit 1
fi
echo "check-generate: generated BPF objects match the sources ($have)"
