#!/bin/sh
# Installs the Debian packages vxdp's build and tests need, only when
# something is missing: the pinned clang (scripts/bpf-clang.env: Debian 12's
# clang-14 and llvm-14, by their versioned package names, whatever the
# unversioned `clang` is), libbpf-dev and bpftool to rebuild the BPF objects,
# iproute2, ethtool and ping to look at and poke the lab, tshark (the tests
# read vxdp monitor's captures with it), prometheus for promtool (the
# tests check the shipped alert rules with it), and vagrant with
# vagrant-libvirt (the tests run `vagrant validate` on the Vagrantfile). The
# lab's real guest (--guest) installs qemu, busybox and iperf3 itself.
#
# --runtime installs only what a host running vxdp is looked at with
# (bpftool, iproute2, ethtool, ping, tshark): deploy/provision-node.sh.
set -eu
cd "$(dirname "$0")/.."
. ./scripts/bpf-clang.env
runtime=""
case "${1:-}" in
"") ;;
--runtime) runtime=yes ;;
*)
	echo "deps: unknown argument $1: use no argument (build and tests) or --runtime" >&2
	exit 1
	;;
esac
missing=""
command -v bpftool >/dev/null 2>&1 || missing="$missing bpftool"
command -v bridge >/dev/null 2>&1 || missing="$missing iproute2"
command -v ethtool >/dev/null 2>&1 || missing="$missing ethtool"
command -v ping >/dev/null 2>&1 || missing="$missing iputils-ping"
command -v tshark >/dev/null 2>&1 || missing="$missing tshark"
prom=""
if [ -z "$runtime" ]; then
	command -v "clang-$BPF_LLVM_MAJOR" >/dev/null 2>&1 || missing="$missing clang-$BPF_LLVM_MAJOR"
	command -v "llvm-strip-$BPF_LLVM_MAJOR" >/dev/null 2>&1 || missing="$missing llvm-$BPF_LLVM_MAJOR"
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$missing libbpf-dev"
	[ -f /usr/include/linux/bpf.h ] || missing="$missing linux-libc-dev"
	command -v vagrant >/dev/null 2>&1 || missing="$missing vagrant"
	[ -e /usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json ] || missing="$missing vagrant-libvirt"
	command -v promtool >/dev/null 2>&1 || prom="prometheus"
fi
if [ -z "$missing" ] && [ -z "$prom" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing$missing $prom; run as root (or: sudo apt-get install$missing $prom)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
	if [ -z "$runtime" ] && ! "clang-$BPF_LLVM_MAJOR" --version | grep -q "clang version $BPF_CLANG_VERSION"; then
		echo "deps: installed $("clang-$BPF_LLVM_MAJOR" --version | head -n 1), but the BPF objects are built with $BPF_CLANG_VERSION (scripts/bpf-clang.env): make check-generate will fail" >&2
	fi
fi
if [ -n "$prom" ]; then
	# Only promtool is wanted: the package must not leave a Prometheus
	# server running. policy-rc.d (added only if the machine has none)
	# forbids starting services during the install; a server started
	# anyway is stopped, and one that runs already is left alone.
	echo "deps: installing prometheus (for promtool; its server is not started)"
	before=$(pgrep -x prometheus || true)
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		policy=yes
	fi
	status=0
	apt-get install -y -q --no-install-recommends prometheus || status=$?
	if [ -n "$policy" ]; then
		rm -f /usr/sbin/policy-rc.d
	fi
	if [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	fi
	for pid in $(pgrep -x prometheus || true); do
		case " $before " in
		*" $pid "*) ;;
		*)
			echo "deps: stopping the prometheus server the install started (pid $pid)"
			kill "$pid"
			;;
		esac
	done
	exit "$status"
fi
