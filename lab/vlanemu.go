package lab

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addVLANDevice gives the calling thread's namespace a VLAN device
// <parent>.<vid>: the kernel's 802.1Q device where it has them, else a
// veth pair of that name whose far end is tagged and untagged by two tiny
// TC programs (this machine's kernel has no CONFIG_VLAN_8021Q). It is for
// the lab's physical host, which runs no vxdp.
func addVLANDevice(parent string, vid uint16) (string, error) {
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s.%d", parent, vid)
	err = netlink.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: int(vid)})
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return name, err
	}
	far := fmt.Sprintf("v%d.%s", vid, parent)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: far}); err != nil {
		return "", fmt.Errorf("add %s: %w", name, err)
	}
	f, err := netlink.LinkByName(far)
	if err != nil {
		return "", err
	}
	if err := netlink.LinkSetUp(f); err != nil {
		return "", err
	}
	tag, err := vlanProgram(vid, p.Attrs().Index, true)
	if err != nil {
		return "", err
	}
	defer tag.Close()
	untag, err := vlanProgram(vid, f.Attrs().Index, false)
	if err != nil {
		return "", err
	}
	defer untag.Close()
	if err := tcIngress(f, tag); err != nil {
		return "", err
	}
	return name, tcIngress(p, untag)
}

// vlanProgram is one direction of an emulated VLAN device: tag everything
// and redirect it to ifindex (tag), or untag frames of vid and redirect
// them to ifindex, passing anything else (untag).
func vlanProgram(vid uint16, ifindex int, tag bool) (*ebpf.Program, error) {
	const (
		skbVlanPresent = 20 // offsetof(struct __sk_buff, vlan_present)
		skbVlanTCI     = 24 // offsetof(struct __sk_buff, vlan_tci)
		tcOK, tcShot   = 0, 2
	)
	redirect := asm.Instructions{
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	}
	var insns asm.Instructions
	if tag {
		insns = asm.Instructions{
			asm.Mov.Imm(asm.R2, 0x0081), // htons(ETH_P_8021Q)
			asm.Mov.Imm(asm.R3, int32(vid)),
			asm.FnSkbVlanPush.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		}
		insns = append(insns, redirect...)
		insns = append(insns, asm.Mov.Imm(asm.R0, tcShot).WithSymbol("drop"), asm.Return())
	} else {
		insns = asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R6, skbVlanPresent, asm.Word),
			asm.JEq.Imm(asm.R2, 0, "pass"),
			asm.LoadMem(asm.R2, asm.R6, skbVlanTCI, asm.Word),
			asm.And.Imm(asm.R2, 0xfff),
			asm.JNE.Imm(asm.R2, int32(vid), "pass"),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.FnSkbVlanPop.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
		}
		insns = append(insns, redirect...)
		insns = append(insns, asm.Mov.Imm(asm.R0, tcOK).WithSymbol("pass"), asm.Return())
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "lab_vlan", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("load VLAN emulation program: %w", err)
	}
	return prog, nil
}

// tcIngress attaches prog to l's TC ingress as a clsact filter, which
// stays with the device (the lab's command exits; nothing is pinned).
func tcIngress(l netlink.Link, prog *ebpf.Program) error {
	idx := l.Attrs().Index
	qdisc := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0),
		Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return fmt.Errorf("clsact on %s: %w", l.Attrs().Name, err)
	}
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 1,
		Priority: 1, Protocol: unix.ETH_P_ALL}, Fd: prog.FD(), Name: "lab_vlan", DirectAction: true}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("filter on %s: %w", l.Attrs().Name, err)
	}
	return nil
}
