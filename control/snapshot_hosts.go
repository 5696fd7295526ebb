package control

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// SnapshotVTEPs reads the hosts' VTEPs from the snapshot an agent keeps in
// its state dir (NATS mode): each host's registered VTEP, the address
// other hosts send its traffic to and accept VXLAN for its ports from, or,
// for a host without a registration, the one its agent record claims. For
// tools naming a host (`vxdp monitor --host`); an agent without a snapshot
// (file mode) knows no host names.
func SnapshotVTEPs(dir string) (map[string]netip.Addr, error) {
	path := filepath.Join(dir, SnapshotFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	registered, claimed := map[string]netip.Addr{}, map[string]netip.Addr{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for line := 1; sc.Scan(); line++ {
		if line == 1 || !bytes.HasPrefix(sc.Bytes(), []byte("hosts.")) {
			continue // the header, or not a host's record
		}
		key, rest, _ := bytes.Cut(sc.Bytes(), []byte(" "))
		_, val, _ := bytes.Cut(rest, []byte(" "))
		if k := ParseKey(string(key)); k.Kind != KindRegistration && k.Kind != KindAgent {
			continue
		}
		_, rec, err := DecodeRecord(string(key), val)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		switch r := rec.(type) {
		case *RegistrationRecord:
			registered[r.Host] = r.VTEP
		case *AgentRecord:
			claimed[r.Host] = r.VTEP
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for h, ip := range claimed {
		if _, ok := registered[h]; !ok && ip.IsValid() {
			registered[h] = ip
		}
	}
	return registered, nil
}
