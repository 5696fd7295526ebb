package lab

import (
	"bytes"
	"debug/elf"

	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A guest is a real VM in the lab: qemu with virtio-net on a tap of the
// port's name in the port's node, booting a minimal system assembled from
// Debian packages on this machine (no download outside the package
// mirror): Debian's kernel and its virtio modules, busybox and iperf3.
// Under KVM where the host offers it, software emulation otherwise.

// guestPackages are the Debian packages a guest needs on the host.
var guestPackages = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"busybox":            "busybox-static",
	"iperf3":             "iperf3",
}

// guestModules load in this order: each after what it depends on.
var guestModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net"}

// GuestImage is a bootable guest: kernel and initramfs.
type GuestImage struct {
	Kernel, Initrd string
}

// EnsureGuestImage installs what a guest needs (Debian packages, the
// kernel package downloaded into dir) and assembles the image in dir,
// reusing what an earlier call built.
func EnsureGuestImage(dir string, log io.Writer) (GuestImage, error) {
	img := GuestImage{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.cpio")}
	if exists(img.Kernel) && exists(img.Initrd) {
		return img, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return img, err
	}
	if err := InstallPackages(guestPackages, log, "guest"); err != nil {
		return img, err
	}
	kernelDir, err := fetchKernel(dir, log)
	if err != nil {
		return img, err
	}
	vmlinuz, err := filepath.Glob(filepath.Join(kernelDir, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return img, fmt.Errorf("guest kernel: no single vmlinuz in %s", kernelDir)
	}
	if err := copyFile(vmlinuz[0], img.Kernel); err != nil {
		return img, err
	}
	files, err := guestFiles(kernelDir)
	if err != nil {
		return img, err
	}
	var cpio bytes.Buffer
	if err := writeCPIO(&cpio, files); err != nil {
		return img, err
	}
	if err := os.WriteFile(img.Initrd, cpio.Bytes(), 0o644); err != nil {
		return img, err
	}
	fmt.Fprintf(log, "guest: image in %s (kernel %s, initramfs %d KiB)\n", dir, filepath.Base(vmlinuz[0]), cpio.Len()/1024)
	return img, nil
}

// fetchKernel downloads Debian's current amd64 kernel package into dir
// (apt-get download, no install) and extracts it; returns the tree.
func fetchKernel(dir string, log io.Writer) (string, error) {
	tree := filepath.Join(dir, "kernel")
	if exists(filepath.Join(tree, "boot")) {
		return tree, nil
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	var pkg string
	for _, l := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(p, "linux-image-") {
			pkg = p
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("no kernel package behind linux-image-amd64")
	}
	fmt.Fprintf(log, "guest: downloading %s\n", pkg)
	cmd := exec.Command("apt-get", "download", "-q", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: no package file in %s", pkg, dir)
	}
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], tree).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	os.Remove(debs[0])
	return tree, nil
}

// cpioFile is one file of the initramfs: its path inside and its content
// from the host (or data).
type cpioFile struct {
	path string
	from string
	data []byte
	mode uint32 // with the type bits
}

// guestInit runs in the guest as PID 1: modules, network from the kernel
// command line (vxdp.ip=ADDR/LEN vxdp.mtu=N), an iperf3 server, and a line
// on the console once ready.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ` + "MODULES" + `; do insmod /lib/vxdp/$m.ko || echo "vxdp-guest: insmod $m failed"; done
for o in $(cat /proc/cmdline); do
	case $o in vxdp.ip=*) ip=${o#vxdp.ip=};; vxdp.mtu=*) mtu=${o#vxdp.mtu=};; esac
done
ip link set lo up
ip link set eth0 mtu ${mtu:-1450} up
ip addr add $ip dev eth0
iperf3 -s -D
echo "vxdp-guest: ready $ip"
while true; do sleep 3600; done
`

// guestFiles lists the initramfs: busybox, iperf3 with the libraries it
// links, the virtio network modules of the kernel tree, and /init.
func guestFiles(kernelDir string) ([]cpioFile, error) {
	var files []cpioFile
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "lib", "lib/vxdp", "lib64", "lib/x86_64-linux-gnu"} {
		files = append(files, cpioFile{path: d, mode: 0o40755})
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		return nil, err
	}
	files = append(files, cpioFile{path: "bin/busybox", from: busybox, mode: 0o100755}, cpioFile{path: "bin/iperf3", from: iperf, mode: 0o100755})
	libs, err := sharedLibs(iperf)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		files = append(files, cpioFile{path: strings.TrimPrefix(l, "/"), from: l, mode: 0o100755})
	}
	for _, m := range guestModules {
		found, _ := filepath.Glob(filepath.Join(kernelDir, "lib/modules/*/kernel/*/*/"+m+".ko"))
		found2, _ := filepath.Glob(filepath.Join(kernelDir, "lib/modules/*/kernel/*/"+m+".ko"))
		found = append(found, found2...)
		if len(found) != 1 {
			return nil, fmt.Errorf("guest kernel: module %s not found once in %s (%d)", m, kernelDir, len(found))
		}
		files = append(files, cpioFile{path: "lib/vxdp/" + m + ".ko", from: found[0], mode: 0o100644})
	}
	files = append(files, cpioFile{path: "init", data: []byte(strings.Replace(guestInit, "MODULES", strings.Join(guestModules, " "), 1)), mode: 0o100755})
	return files, nil
}

// sharedLibs resolves the libraries an executable links, transitively,
// with the paths of this machine's dynamic loader (Debian's multiarch
// directories), plus the loader itself.
func sharedLibs(exe string) ([]string, error) {
	dirs := []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"}
	seen := map[string]bool{}
	var out []string
	var walk func(string) error
	walk = func(path string) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		defer f.Close()
		if interp := f.Progs; path == exe {
			for _, p := range interp {
				if p.Type == elf.PT_INTERP {
					b := make([]byte, p.Filesz)
					if _, err := p.ReadAt(b, 0); err == nil {
						loader := strings.TrimRight(string(b), "\x00")
						if !seen[loader] {
							seen[loader] = true
							out = append(out, loader)
						}
					}
				}
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return err
		}
		for _, lib := range needed {
			found := ""
			for _, d := range dirs {
				if p := filepath.Join(d, lib); exists(p) {
					found = p
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s: not found in %v", path, lib, dirs)
			}
			if !seen[found] {
				seen[found] = true
				out = append(out, found)
				if err := walk(found); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, walk(exe)
}

// writeCPIO writes files as a newc ("070701") archive, the format the
// kernel unpacks an initramfs from. Symlinks on the host are followed.
func writeCPIO(w io.Writer, files []cpioFile) error {
	ino := uint32(1)
	header := func(name string, mode, size uint32) error {
		_, err := fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
			ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0, name)
		ino++
		if err != nil {
			return err
		}
		return pad(w, 110+len(name)+1)
	}
	for _, f := range files {
		data := f.data
		if f.from != "" {
			b, err := os.ReadFile(f.from)
			if err != nil {
				return err
			}
			data = b
		}
		if err := header(f.path, f.mode, uint32(len(data))); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if err := pad(w, len(data)); err != nil {
			return err
		}
	}
	return header("TRAILER!!!", 0, 0)
}

// pad writes zeros up to the next multiple of 4 after n bytes.
func pad(w io.Writer, n int) error {
	_, err := w.Write(make([]byte, (4-n%4)%4))
	return err
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
