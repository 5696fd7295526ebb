package maps

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/reasons.md from bpf/include/reasons.h")

// reasonLine matches one entry of the VXDP_REASONS list.
var reasonLine = regexp.MustCompile(`X\((\w+), (\w+), ([\w |]+), "((?:[^"\\]|\\.)*)"\)`)

// TestReasonsDoc keeps docs/reasons.md what bpf/include/reasons.h says,
// and checks the list against the compiled programs' BTF: every reason
// documented, its verdict its name's prefix, its programs those BTF gives.
// `go test ./maps -run TestReasonsDoc -update` rewrites the file.
func TestReasonsDoc(t *testing.T) {
	src, err := os.ReadFile("../bpf/include/reasons.h")
	if err != nil {
		t.Fatal(err)
	}
	type entry struct{ name, verdict, progs, doc string }
	var entries []entry
	for _, m := range reasonLine.FindAllStringSubmatch(string(src), -1) {
		entries = append(entries, entry{m[1], strings.ToLower(m[2]), m[3], strings.ReplaceAll(m[4], `\"`, `"`)})
	}
	if len(entries) != len(Reasons()) {
		t.Fatalf("reasons.h lists %d reasons, the programs' BTF %d", len(entries), len(Reasons()))
	}
	progOf := map[string]Prog{"P_PORT": ProgPort, "P_UPLINK": ProgUplink, "P_VXLAN": ProgVXLAN, "P_BRIDGE": ProgBridge, "P_DELIVER": ProgDeliver, "P_SEGMENT": ProgSegment}
	var b bytes.Buffer
	b.WriteString(docHeader)
	for _, p := range Progs() {
		fmt.Fprintf(&b, "\n## %s\n\n| reason | verdict | when |\n|---|---|---|\n", progTitles[p])
		for i, e := range entries {
			r := Reasons()[i]
			if ReasonName(r) != e.name || Verdict(r) != e.verdict {
				t.Errorf("reason %d: reasons.h %s (%s), BTF %s (%s)", r, e.name, e.verdict, ReasonName(r), Verdict(r))
			}
			in := false
			for _, tok := range strings.Split(e.progs, "|") {
				in = in || progOf[strings.TrimSpace(tok)] == p
			}
			if in != containsReason(ProgReasons(p), r) {
				t.Errorf("%s: reasons.h and BTF disagree on whether %s gives it", e.name, ProgName(p))
			}
			if in {
				fmt.Fprintf(&b, "| `%s` | %s | %s |\n", e.name, e.verdict, e.doc)
			}
		}
	}
	b.WriteString(docFooter)
	const path = "../docs/reasons.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(have, b.Bytes()) {
		t.Errorf("docs/reasons.md is not what bpf/include/reasons.h says (%v): run `go test ./maps -run TestReasonsDoc -update`", err)
	}
}

func containsReason(rs []Reason, r Reason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

var progTitles = map[Prog]string{
	ProgPort:    "Port program (TC ingress of a tap: frames the VM sends)",
	ProgUplink:  "Uplink program (XDP on the interface holding `local_ip`)",
	ProgVXLAN:   "VXLAN program (TC ingress of `vxlan-<VNI>`: what the kernel decapsulated)",
	ProgBridge:  "Bridge program (TC ingress of `brq…`: what a bridge hands to the host)",
	ProgDeliver: "Deliver program (TC egress of a tap: frames on their way into the VM)",
	ProgSegment: "Segment program (TC ingress of a provider segment device: what the kernel received of a provider network)",
}

const docHeader = `# Verdict reasons

<!-- Generated from bpf/include/reasons.h by ` + "`go test ./maps -run TestReasonsDoc -update`" + `; edit the header. -->

Every packet a vxdp program sees is counted under exactly one reason, per CPU and per
program, in the pinned ` + "`stats`" + ` map (` + "`vxdp dump stats`" + `, Prometheus ` + "`vxdp_packets_total`" + ` /
` + "`vxdp_bytes_total{program,reason,verdict}`" + `). The counters of a program therefore add up to
the packets it saw. The names are the C enum ` + "`vxdp_reason`" + ` in ` + "`bpf/include/reasons.h`" + `; the
prefix is the verdict:

- **PASS**: handed to the kernel unchanged (` + "`TC_ACT_OK`" + ` / ` + "`XDP_PASS`" + `): the Linux bridge and
  vxlan device handle it exactly as they would without vxdp, and the vxlan and bridge programs
  still check what they receive.
- **DROP**: discarded (` + "`TC_ACT_SHOT`" + ` / ` + "`XDP_DROP`" + `): frames that would break isolation or port
  security, or that the kernel would drop too.
- **REDIRECT**: forwarded by BPF (to a tap, or encapsulated to the uplink).
- **TX**: answered on the device it came from (proxy ARP).
`

const docFooter = `
A frame passed to the kernel is never modified first; a frame is only modified on a path that
ends in a redirect or a drop, so a failure half-way can never misdeliver. Outer fragments and
headers with options go through the same VNI and VTEP checks before they are passed, and the
vxlan program checks the VTEP again on whatever the kernel decapsulates.
`
