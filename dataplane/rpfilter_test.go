package dataplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestRPFilterWarnings: status warns about an addressed interface vxdp
// does not serve (eth0, the management network) unless its effective
// rp_filter (the larger of conf/all and conf/<dev>) is strict; served
// interfaces and interfaces without an address are not its concern.
func TestRPFilterWarnings(t *testing.T) {
	h := newHost(t) // eth2 192.168.248.3/24, the uplink
	h.veth("eth0", "peer-eth0")
	h.veth("eth1", "peer-eth1") // no address
	eth0, _ := h.nl.LinkByName("eth0")
	addr, _ := netlink.ParseAddr("10.30.1.203/24")
	if err := h.nl.AddrAdd(eth0, addr); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{"eth2": true}
	for _, c := range []struct {
		name            string
		all, eth0, eth2 string
		want            []string // interfaces warned about
	}{
		{"loose everywhere (systemd's default)", "2", "2", "2", []string{"eth0"}},
		{"off", "0", "0", "0", []string{"eth0"}},
		{"strict on eth0", "0", "1", "0", nil},
		{"strict in all", "1", "0", "0", nil},
		{"loose in all wins over strict on eth0", "2", "1", "0", []string{"eth0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for dev, v := range map[string]string{"all": c.all, "eth0": c.eth0, "eth2": c.eth2, "eth1": "0"} {
				os.MkdirAll(filepath.Join(dir, dev), 0o755)
				if err := os.WriteFile(filepath.Join(dir, dev, "rp_filter"), []byte(v+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := rpFilterWarnings(h.nl, dir, served)
			if len(got) != len(c.want) {
				t.Fatalf("warnings %q, want one for each of %q", got, c.want)
			}
			for i, dev := range c.want {
				if !strings.HasPrefix(got[i], "rp_filter on "+dev+" ") || !strings.Contains(got[i], "net.ipv4.conf."+dev+".rp_filter = 1") {
					t.Errorf("warning %q does not name %s and the fix", got[i], dev)
				}
			}
		})
	}
}
