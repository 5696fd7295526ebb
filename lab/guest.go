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

// GuestSpec is one guest: the port it is, where its console goes.
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

// StartGuest boots g in its node's namespace and waits until its network
// is up. The returned command is the running qemu.
func StartGuest(ctx context.Context, img GuestImage, g GuestSpec) (*exec.Cmd, error) {
	os.Remove(g.Log)
	kvm := kvmUsable()
	cmd := exec.Command("ip", append([]string{"netns", "exec", g.NS, "qemu-system-x86_64"}, qemuArgs(img, g, kvm)...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu for %s: %w", g.Port.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("qemu for %s exited: %v\n%s", g.Port.Name, err, stderr.String())
		case <-ctx.Done():
			cmd.Process.Kill()
			<-exited
			console, _ := os.ReadFile(g.Log)
			return nil, fmt.Errorf("guest %s not up (kvm %v): %w; console:\n%s", g.Port.Name, kvm, ctx.Err(), tail(string(console), 20))
		case <-tick.C:
			if console, _ := os.ReadFile(g.Log); bytes.Contains(console, []byte(guestReady)) {
				go func() { <-exited }() // reaped when it ends
				return cmd, nil
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
