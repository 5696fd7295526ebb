package lab

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// prepareVMNIC makes a VM-side veth behave like a VM's NIC, in the calling
// thread's namespace: GRO on, as a virtio guest's driver has it.
//
// XDP_REDIRECT into a veth (the uplink program redirecting a decapsulated
// frame to a tap) only delivers if the tap's peer, the VM's eth0, runs
// NAPI, which a veth does when it has GRO on (or an XDP program, which
// would disable GRO and make every frame cost the VM a full trip through
// its stack). The VM keeps TSO and checksum offload on, like a virtio
// guest, so its TSO super-frames exercise encapsulation.
func prepareVMNIC(dev string) error {
	return ethtoolSet(dev, ethtoolSGRO, true)
}

// prepareWire makes an underlay bridge port behave like a physical wire:
// checksums are filled in and GSO frames segmented before a frame reaches
// the node on the other side. Between veths a CHECKSUM_PARTIAL frame keeps
// its unfilled TCP checksum; the kernel path does not mind, but XDP works
// on bare frames, so once the uplink program redirects such a frame to a
// tap the VM would find an invalid checksum and drop it. A real NIC never
// delivers a partial checksum, so turning TX checksum offload off on the
// bridge side of each node's eth2 (the kernel then completes checksums in
// software on transmit) is the faithful lab setup.
func prepareWire(dev string) error {
	return setTxChecksum(dev, false)
}

// Legacy ethtool feature commands (linux/ethtool.h).
const (
	ethtoolSTXCSUM = 0x17 // ethtool -K dev tx
	ethtoolGGRO    = 0x2b // ethtool -k dev: gro
	ethtoolSGRO    = 0x2c // ethtool -K dev gro
)

// setTxChecksum switches TX checksum offload of dev (ethtool -K dev tx on|off).
func setTxChecksum(dev string, on bool) error { return ethtoolSet(dev, ethtoolSTXCSUM, on) }

// ethtoolSet switches one feature of dev with a legacy ethtool ioctl.
func ethtoolSet(dev string, cmd uint32, on bool) error {
	var data uint32
	if on {
		data = 1
	}
	_, err := ethtoolValue(dev, cmd, data)
	return err
}

// ethtoolGet reads one feature of dev with a legacy ethtool ioctl.
func ethtoolGet(dev string, cmd uint32) (bool, error) {
	v, err := ethtoolValue(dev, cmd, 0)
	return v != 0, err
}

// ethtoolValue issues a legacy ethtool_value ioctl and returns its data.
func ethtoolValue(dev string, cmd, data uint32) (uint32, error) {
	val := struct{ cmd, data uint32 }{cmd: cmd, data: data}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&val)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, fmt.Errorf("ethtool %#x %s: %w", cmd, dev, errno)
	}
	return val.data, nil
}
