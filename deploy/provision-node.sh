#!/bin/sh
# Sets up one host of a vxdp deployment: the Vagrantfile's nodes are set up
# with it, and a real hypervisor the same way (docs/operations.md). Steps:
# validate the arguments and resolve the interfaces; write the agent's
# configuration (/etc/vxdp/vxdp-agent.ini, /etc/default/vxdp-agent, a unit
# drop-in bringing the mapped interfaces up) from the node's name and
# addresses; install the tools to look at a node
# (scripts/deps.sh --runtime); build and `make install` vxdp (binary, units,
# man page); check the configuration (`vxdp agent --check-config`); start
# vxdp-server on the controller and vxdp-agent everywhere. Needs root and
# Go (scripts/host-setup.sh).
#
#   deploy/provision-node.sh --host node3 --mgmt-ip 10.30.1.203 \
#       --local-ip 192.168.248.3 --nats nats://10.30.1.208:4222 \
#       --mapping default:eth1 --mapping external:eth3 [--controller]
#
# A mapping's interface may be named by its MAC address
# (default:52:54:00:30:01:cb): NIC names depend on the machine, the MACs are
# what the Vagrantfile sets. --root DIR writes the configuration only, under
# DIR, looking interfaces up in DIR/sys/class/net (tests, packaging).
#
# Every file written starts with a line naming this script; a file without
# it is never overwritten (only the example `make install` ships is).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
marker="# Written by deploy/provision-node.sh"
neutron_ini=/etc/neutron/plugins/ml2/linuxbridge_agent.ini
agent_ini=/etc/vxdp/vxdp-agent.ini
agent_default=/etc/default/vxdp-agent
links_dropin=/etc/systemd/system/vxdp-agent.service.d/physical-interfaces.conf
metrics_port=9641

fail() {
	echo "provision-node: $*" >&2
	exit 1
}

usage="usage: $0 --mgmt-ip IP --local-ip IP --nats URL[,URL...] [--host NAME] [--mapping PHYSNET:IFACE|PHYSNET:MAC]... [--controller] [--root DIR]"
host=""
mgmt_ip=""
local_ip=""
nats=""
mapping_args=""
controller=""
root=""
while [ $# -gt 0 ]; do
	case "$1" in
	--controller)
		controller=yes
		shift
		continue
		;;
	-h | --help)
		echo "$usage"
		exit 0
		;;
	--host | --mgmt-ip | --local-ip | --nats | --mapping | --root)
		[ $# -ge 2 ] || fail "$1 needs a value ($usage)"
		;;
	*) fail "unknown argument $1 ($usage)" ;;
	esac
	case "$1" in
	--host) host=$2 ;;
	--mgmt-ip) mgmt_ip=$2 ;;
	--local-ip) local_ip=$2 ;;
	--nats) nats=$2 ;;
	--mapping) mapping_args="$mapping_args $2" ;;
	--root) root=$2 ;;
	esac
	shift 2
done

# ipv4 ADDR: ADDR is a dotted IPv4 address.
ipv4() {
	echo "$1" | awk -F. 'NF != 4 { exit 1 } { for (i = 1; i <= 4; i++) if ($i !~ /^[0-9]+$/ || $i > 255) exit 1 }'
}
[ -n "$mgmt_ip" ] || fail "--mgmt-ip is required: the node's management address (NATS, metrics), e.g. 10.30.1.203"
ipv4 "$mgmt_ip" || fail "--mgmt-ip $mgmt_ip: want an IPv4 address like 10.30.1.203"
[ -n "$local_ip" ] || fail "--local-ip is required: the VTEP address ([vxlan] local_ip), e.g. 192.168.248.3"
ipv4 "$local_ip" || fail "--local-ip $local_ip: want an IPv4 address like 192.168.248.3"
[ -n "$nats" ] || fail "--nats is required: the control plane's URL, e.g. nats://10.30.1.208:4222"
for url in $(echo "$nats" | tr ',' ' '); do
	case "$url" in
	nats://?* | tls://?*) ;;
	*) fail "--nats $url: want nats://HOST:PORT or tls://HOST:PORT, e.g. nats://10.30.1.208:4222" ;;
	esac
done
[ -n "$host" ] || host=$(hostname)
echo "$host" | grep -Eqx '[A-Za-z0-9][A-Za-z0-9._-]{0,62}' ||
	fail "--host $host: want a host name of letters, digits, '.', '_' and '-' (Nova's host, e.g. node3)"

# The interfaces, by name or MAC.
sysnet="$root/sys/class/net"
nics() {
	for dev in "$sysnet"/*; do
		[ -e "$dev/address" ] && printf ' %s (%s)' "${dev##*/}" "$(cat "$dev/address")"
	done
}
mappings=""
physical_ifaces=""
seen=" "
for m in $mapping_args; do
	physnet=${m%%:*}
	iface=${m#*:}
	if [ "$physnet" = "$m" ] || [ -z "$physnet" ] || [ -z "$iface" ]; then
		fail "--mapping $m: want PHYSNET:INTERFACE or PHYSNET:MAC, e.g. default:eth1"
	fi
	case "$seen" in *" $physnet "*) fail "--mapping $m: physical network $physnet is mapped twice" ;; esac
	seen="$seen$physnet "
	case "$iface" in
	*:*)
		mac=$(echo "$iface" | tr 'A-F' 'a-f')
		echo "$mac" | grep -Eqx '([0-9a-f]{2}:){5}[0-9a-f]{2}' || fail "--mapping $m: $iface is neither an interface name nor a MAC address like 52:54:00:30:01:cb"
		iface=""
		for dev in "$sysnet"/*; do
			if [ -e "$dev/address" ] && [ "$(cat "$dev/address")" = "$mac" ]; then
				iface=${dev##*/}
			fi
		done
		[ -n "$iface" ] || fail "--mapping $m: no interface has MAC $mac (interfaces:$(nics))"
		;;
	*) [ -e "$sysnet/$iface" ] || fail "--mapping $m: no interface $iface (interfaces:$(nics))" ;;
	esac
	mappings="${mappings:+$mappings,}$physnet:$iface"
	physical_ifaces="$physical_ifaces $iface"
done

# ours FILE EXAMPLE: FILE may be written: it is absent, written by this
# script, or the example make install put there.
ours() {
	[ -e "$root$1" ] || return 0
	case "$(head -n 1 "$root$1")" in "$marker"*) return 0 ;; esac
	cmp -s "$root$1" "$2" ||
		fail "$root$1 exists and was not written by this script: move it away and rerun (or make the changes by hand)"
}
ours "$agent_ini" "$src/deploy/vxdp-agent.ini"
ours "$agent_default" "$src/deploy/systemd/vxdp-agent.default"
ours "$links_dropin" /dev/null
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	fail "run as root (or --root DIR to write the configuration only)"
fi

# write FILE MODE: FILE gets standard input, atomically.
write() {
	mkdir -p "$(dirname "$1")"
	cat >"$1.tmp"
	chmod "$2" "$1.tmp"
	mv "$1.tmp" "$1"
	echo "provision-node: wrote $1"
}
{
	echo "$marker for $host: rerun it to change"
	echo "# this file. deploy/vxdp-agent.ini describes every option."
	echo "[DEFAULT]"
	echo "host = $host"
	echo
	echo "[agent]"
	echo "# Prometheus endpoint on the management address (deploy/prometheus.yml)."
	echo "metrics_listen = $mgmt_ip:$metrics_port"
	if [ -n "$mappings" ]; then
		echo
		echo "[linux_bridge]"
		echo "physical_interface_mappings = $mappings"
	fi
	echo
	echo "[vxlan]"
	echo "local_ip = $local_ip"
	echo "l2_population = true"
	echo
	echo "[securitygroup]"
	echo "enable_security_group = true"
	echo
	echo "[nats]"
	echo "servers = $nats"
} | write "$root$agent_ini" 0640
configs="--config $agent_ini"
if [ -e "$root$neutron_ini" ]; then
	# Neutron's file first: vxdp's own wins where both set an option.
	configs="--config $neutron_ini $configs"
fi
printf '%s\nVXDP_AGENT_ARGS="%s"\n' "$marker: the arguments of vxdp agent." "$configs" |
	write "$root$agent_default" 0644
# The physical interfaces carry no address, so no network configuration
# brings them up (Vagrant's auto_config false): the agent's unit does, and
# names a missing one itself.
if [ -n "$physical_ifaces" ]; then
	{
		echo "$marker: the physical interfaces of"
		echo "# physical_interface_mappings are up before the agent starts."
		echo "[Service]"
		for iface in $physical_ifaces; do
			echo "ExecStartPre=-/sbin/ip link set $iface up"
		done
	} | write "$root$links_dropin" 0644
elif [ -e "$root$links_dropin" ]; then
	rm "$root$links_dropin"
	echo "provision-node: removed $root$links_dropin (no mappings)"
fi
[ -z "$root" ] || exit 0

"$src/scripts/deps.sh" --runtime
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || fail "Go is missing: run scripts/host-setup.sh first"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Built outside the source tree, which may be shared with other nodes.
make -s -C "$src" install BIN="$build/vxdp"
# shellcheck disable=SC2086
/usr/local/bin/vxdp agent --check-config $configs
systemctl daemon-reload
units="vxdp-agent"
[ -z "$controller" ] || units="vxdp-server $units"
for unit in $units; do
	systemctl enable "$unit"
	# A restart takes a new binary or configuration; the dataplane keeps
	# forwarding across it.
	systemctl restart "$unit"
	echo "provision-node: $unit running"
done
echo "provision-node: $host is up; \`vxdp status\` checks it, \`vxdp agent list --nats $nats\` lists the agents"
