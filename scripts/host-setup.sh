#!/bin/sh
# Makes a fresh Debian 12 machine able to build and run vxdp: a kernel with
# TCX (6.6 or later: bookworm-backports' linux-image, when the running one
# is older), make, git and the Go release go.mod names in /usr/local/go.
# Everything is skipped when already there. A new kernel needs a reboot,
# which this script asks for but does not do (the Vagrantfile reboots).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "host-setup: run as root (sudo $0)" >&2
	exit 1
fi
go_version=$(awk '$1 == "go" { print $2; exit }' go.mod)
arch=$(dpkg --print-architecture)
export DEBIAN_FRONTEND=noninteractive

# The kernel: TCX came with 6.6.
kernel_ok() {
	# shellcheck disable=SC2046
	set -- $(uname -r | tr '.-' '  ')
	[ "$1" -gt 6 ] || { [ "$1" -eq 6 ] && [ "$2" -ge 6 ]; }
}
updated=""
if ! kernel_ok; then
	. /etc/os-release
	list=/etc/apt/sources.list.d/backports.list
	if [ ! -e "$list" ]; then
		echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" >"$list"
	fi
	apt-get update -q
	updated=yes
	echo "host-setup: installing the ${VERSION_CODENAME}-backports kernel (running $(uname -r); TCX needs 6.6)"
	apt-get install -y -q -t "${VERSION_CODENAME}-backports" "linux-image-$arch"
	echo "host-setup: reboot into the new kernel before starting vxdp"
fi

missing=""
for tool in make git curl; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"
if [ -n "$missing" ]; then
	[ -n "$updated" ] || apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi

# Go, as go.dev installs it; a different release there is left alone.
if [ -x /usr/local/go/bin/go ]; then
	have=$(/usr/local/go/bin/go env GOVERSION)
	if [ "$have" != "go$go_version" ]; then
		echo "host-setup: /usr/local/go holds $have, go.mod wants go$go_version: remove /usr/local/go (or install go$go_version there) and rerun" >&2
		exit 1
	fi
else
	echo "host-setup: installing go$go_version in /usr/local/go"
	curl -fsSL "https://go.dev/dl/go$go_version.linux-$arch.tar.gz" | tar -C /usr/local -xz
fi
if [ ! -e /etc/profile.d/go.sh ]; then
	echo 'export PATH=$PATH:/usr/local/go/bin' >/etc/profile.d/go.sh
fi
