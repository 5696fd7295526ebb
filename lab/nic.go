package lab

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// prepareVMNIC makes a VM-side veth behave like a VM's NIC for the vxdp
// uplink program, in the calling thread's namespace.
//
// XDP_REDIRECT into a veth (the uplink program redirecting a decapsulated
// frame to a tap) only delivers if the tap's peer, the VM's eth0, runs an
// XDP program or has GRO on; otherwise the frame is dropped. A real tap's
// reader is the VM, so this is a lab-only need: attach a program that
// passes everything. The VM keeps TSO and checksum offload on, like a
// virtio guest, so its TSO super-frames exercise encapsulation.
func prepareVMNIC(dev string) error {
	return attachXDPPass(dev)
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

// attachXDPPass attaches a program returning XDP_PASS to dev (native mode).
// The attachment lives as long as the device.
func attachXDPPass(dev string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "lab_xdp_pass",
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load XDP_PASS program: %w", err)
	}
	defer prog.Close()
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("link %s: %w", dev, err)
	}
	if err := netlink.LinkSetXdpFdWithFlags(l, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
		return fmt.Errorf("attach XDP_PASS to %s: %w", dev, err)
	}
	return nil
}

// setTxChecksum switches TX checksum offload of dev (ethtool -K dev tx on|off)
// with the legacy ETHTOOL_STXCSUM ioctl.
func setTxChecksum(dev string, on bool) error {
	const ethtoolSTXCSUM = 0x17
	val := struct{ cmd, data uint32 }{cmd: ethtoolSTXCSUM}
	if on {
		val.data = 1
	}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&val)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("ethtool -K %s tx %v: %w", dev, on, errno)
	}
	return nil
}
