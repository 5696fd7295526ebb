#!/bin/sh
# Installs the Debian packages vxdp's build and tests need, only when
# something is missing: clang/llvm/libbpf-dev/bpftool to rebuild the BPF
# objects, iproute2, ethtool and ping to look at and poke the lab, tshark
# (the tests read vxdp monitor's captures with it), and prometheus for
# promtool (the tests check the shipped alert rules with it). The lab's
# real guest (--guest) installs qemu, busybox and iperf3 itself.
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
command -v tshark >/dev/null 2>&1 || missing="$missing tshark"
prom=""
command -v promtool >/dev/null 2>&1 || prom="prometheus"
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
