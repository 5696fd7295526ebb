#!/bin/sh
# Installs the Debian packages vxdp's build and tests need, only when
# something is missing: clang/llvm/libbpf-dev/bpftool to rebuild the BPF
# objects, iproute2, ethtool and ping to look at and poke the lab.
set -eu
missing=""
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v llvm-strip >/dev/null 2>&1 || missing="$missing llvm"
[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$missing libbpf-dev"
command -v bpftool >/dev/null 2>&1 || missing="$missing bpftool"
command -v bridge >/dev/null 2>&1 || missing="$missing iproute2"
command -v ethtool >/dev/null 2>&1 || missing="$missing ethtool"
command -v ping >/dev/null 2>&1 || missing="$missing iputils-ping"
[ -f /usr/include/linux/bpf.h ] || missing="$missing linux-libc-dev"
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing$missing; run as root (or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
