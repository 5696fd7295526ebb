package lab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// guestReady is what the guest's init prints once its network is up.
const guestReady = "vxdp-guest: ready"

// GuestSpec is one guest: the port it is, where qemu runs, where its
// console goes.
type GuestSpec struct {
	Port Port
	NS   string // the node's namespace, where qemu creates the tap
	Log  string // the guest's console
}

// kvmUsable reports whether KVM can run a stock guest kernel here: the
// device exists and the CPU exposes virtualization (a nested setup
// without it has /dev/kvm but cannot boot the guest).
func kvmUsable() bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	cpu, err := os.ReadFile("/proc/cpuinfo")
	return err == nil && (bytes.Contains(cpu, []byte(" vmx")) || bytes.Contains(cpu, []byte(" svm")))
}

// qemuArgs is the qemu command line of a guest: one CPU, virtio-net on
// a tap named after the port (what Nova/libvirt creates), the port's MAC,
// its address and the network MTU on the kernel command line.
func qemuArgs(img GuestImage, g GuestSpec, kvm bool) []string {
	accel := "tcg"
	if kvm {
		accel = "kvm"
	}
	return []string{
		"-machine", "q35,accel=" + accel, "-cpu", "max", "-m", "512", "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
		"-serial", "file:" + g.Log,
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", fmt.Sprintf("console=ttyS0 quiet panic=-1 vxdp.ip=%s vxdp.mtu=%d",
			netip.PrefixFrom(g.Port.IP, 24), NetworkMTU),
		"-netdev", "tap,id=n0,ifname=" + g.Port.Tap() + ",script=no,downscript=no,vhost=off",
		"-device", "virtio-net-pci,netdev=n0,mac=" + g.Port.MAC.String(),
	}
}

// guestKey is the guest's process in the lab's manifest.
const guestKey = "guest"

// startGuest boots the lab's guest (the image is assembled, or reused,
// first) in its node's namespace; WaitGuest waits for its network.
func (l *Lab) startGuest() error {
	p, ok := l.GuestPort()
	if !ok {
		return nil
	}
	img, err := EnsureGuestImage(GuestImageDir, l.log)
	if err != nil {
		return fmt.Errorf("guest image: %w", err)
	}
	os.Remove(l.GuestLog())
	g := GuestSpec{Port: p, NS: l.NS(p.Node), Log: l.GuestLog()}
	kvm := kvmUsable()
	args := append([]string{"netns", "exec", g.NS, "qemu-system-x86_64"}, qemuArgs(img, g, kvm)...)
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	if _, err := l.spawnExec(guestKey, ip, args, l.GuestLog()+".qemu"); err != nil {
		return fmt.Errorf("start guest %s: %w", p.Name, err)
	}
	fmt.Fprintf(l.log, "started guest %s (qemu, %s) on %s in %s, console %s\n", p.Name,
		map[bool]string{true: "KVM", false: "software emulation"}[kvm], p.Tap(), g.NS, l.GuestLog())
	return nil
}

// WaitGuest waits until the guest's network is up (its init prints a
// line on the console).
func (l *Lab) WaitGuest(ctx context.Context) error {
	if _, ok := l.GuestPort(); !ok {
		return nil
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if console, _ := os.ReadFile(l.GuestLog()); bytes.Contains(console, []byte(guestReady)) {
			return nil
		}
		l.mu.Lock()
		a := l.agents[guestKey]
		l.mu.Unlock()
		if !a.running() {
			out, _ := os.ReadFile(l.GuestLog() + ".qemu")
			return fmt.Errorf("guest exited: %s", tail(string(out), 10))
		}
		select {
		case <-ctx.Done():
			console, _ := os.ReadFile(l.GuestLog())
			return fmt.Errorf("guest not up: %w; console:\n%s", ctx.Err(), tail(string(console), 20))
		case <-tick.C:
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
