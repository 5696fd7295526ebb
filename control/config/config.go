// Package config reads the vxdp agent's configuration: its own ini file
// (vxdp-agent.ini) and Neutron's linuxbridge_agent.ini, which an operator
// can point the agent at unchanged. Both use the same sections and option
// names where they overlap ([vxlan] local_ip, l2_population,
// [linux_bridge] physical_interface_mappings, [securitygroup]
// enable_security_group...), so one parser reads both, and several files
// may be given, later ones overriding earlier ones (like oslo.config's
// --config-file). Every error names the file, the line and the fix, and is
// reported before the agent touches the kernel.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vxdp/vxdp/control"
)

// AgentConfig is the validated configuration of an agent.
type AgentConfig struct {
	// Files read, in order.
	Files []string
	// Host is the name ports are bound to ([DEFAULT] host; default: the
	// machine's host name, as Neutron).
	Host string
	// StateDir keeps the agent's state ([DEFAULT] state_path).
	StateDir string
	// Debug turns debug logging on ([DEFAULT] debug).
	Debug bool

	// LocalIP is the VTEP address ([vxlan] local_ip).
	LocalIP netip.Addr
	// L2Population must be true: vxdp always distributes FDB entries.
	L2Population bool
	// VXLANPort is the UDP destination port ([vxlan] udp_dstport; Linux's
	// 8472 by default, as the seed's vxlan-100).
	VXLANPort uint16
	// TTL of VXLAN packets ([vxlan] ttl; 0: the kernel default, ip_default_ttl).
	TTL int

	// PhysicalInterfaceMappings maps provider networks to interfaces
	// ([linux_bridge] physical_interface_mappings, e.g. default:eth1).
	PhysicalInterfaceMappings map[string]string
	// EnableSecurityGroup turns security groups on ([securitygroup]).
	EnableSecurityGroup bool

	// ReportInterval between heartbeats ([agent] report_interval).
	ReportInterval time.Duration
	// AvailabilityZone of the agent ([agent] availability_zone).
	AvailabilityZone string
	// MetricsListen is the address of the Prometheus endpoint
	// ([agent] metrics_listen; "" = off).
	MetricsListen string

	// NATS says how to reach the control plane ([nats]).
	NATS NATSConfig

	// Dataplane options ([dataplane]).
	Dataplane DataplaneConfig

	// Warnings are options read but ignored (Neutron options vxdp has no
	// use for), each naming its file and line.
	Warnings []string

	// Sources says where each option set in a file was set, by
	// "section.option" (e.g. "vxlan.local_ip"): the last file that set it.
	Sources map[string]Source
}

// Source is where an option was set.
type Source struct {
	File string
	Line int
}

// String is "file:line".
func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// NATSConfig is the [nats] section.
type NATSConfig struct {
	Servers      []string
	User         string
	Password     string
	NKeySeedFile string
	CredsFile    string
	TLSCA        string
	TLSCert      string
	TLSKey       string
	Bucket       string
}

// DataplaneConfig is the [dataplane] section.
type DataplaneConfig struct {
	// EnableBPF loads the BPF fast path; false leaves only the kernel
	// bridge path (a node "with the BPF path switched off").
	EnableBPF bool
	// XDPMode is "native", "generic" or "auto".
	XDPMode string
	// TCMode is "tcx", "clsact" or "auto".
	TCMode string
	// BPFFS is the bpffs mount point; pins go to <bpffs>/vxdp/<host>.
	BPFFS string
	// ARPResponder lets the kernel vxlan device answer ARP from the l2pop
	// entries too ([vxlan] arp_responder, Neutron's option).
	ARPResponder bool
	// CTTCPMax and CTOtherMax size the tracked-flow tables of security
	// groups when the maps are created (0: the built-in defaults,
	// 524288 and 262144, Cilium's).
	CTTCPMax, CTOtherMax int
	// DHCP answers DHCPv4 at the port for subnets with DHCP on ([dataplane]
	// dhcp; default true). Off, a VM's DHCP goes out to the network (to
	// Neutron's DHCP agent, say) whatever the subnet says.
	DHCP bool
}

// Defaults are the values of options not set in any file.
func Defaults() *AgentConfig {
	return &AgentConfig{
		StateDir:                  "/var/lib/vxdp",
		L2Population:              true,
		VXLANPort:                 8472,
		EnableSecurityGroup:       true,
		ReportInterval:            control.DefaultReportInterval,
		PhysicalInterfaceMappings: map[string]string{},
		NATS:                      NATSConfig{Bucket: control.DefaultBucket},
		Dataplane:                 DataplaneConfig{EnableBPF: true, XDPMode: "auto", TCMode: "auto", BPFFS: "/sys/fs/bpf", DHCP: true},
	}
}

// Load reads and validates the files in order; later files override
// earlier ones. It returns every error found (errors.Join of *Error).
func Load(paths ...string) (*AgentConfig, error) {
	return LoadOver(Defaults(), paths...)
}

// LoadOver is Load starting from base instead of Defaults(): values the
// command line already fixed (e.g. local_ip) count as set, and the files
// override them; callers re-apply their flags afterwards.
func LoadOver(base *AgentConfig, paths ...string) (*AgentConfig, error) {
	files := make([]file, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		files = append(files, file{p, data})
	}
	if len(files) == 0 {
		return nil, errors.New("config: no file given")
	}
	return parse(base, files, os.Hostname)
}

type file struct {
	name string
	data []byte
}

// kind of an option's value.
type kind int

const (
	kString kind = iota
	kBool
	kInt
	kIgnored // a Neutron option vxdp accepts and does not use
	kMustBeTrue
)

type spec struct {
	kind kind
	// set applies the value; it returns a problem and its fix.
	set func(c *AgentConfig, v string) (string, string)
}

// schema lists the options vxdp understands, per section.
var schema = map[string]map[string]spec{
	"DEFAULT": {
		"host":       {kString, func(c *AgentConfig, v string) (string, string) { c.Host = v; return "", "" }},
		"state_path": {kString, func(c *AgentConfig, v string) (string, string) { c.StateDir = v; return "", "" }},
		"debug":      {kBool, func(c *AgentConfig, v string) (string, string) { return setBool(&c.Debug, v) }},
	},
	"agent": {
		"report_interval": {kInt, func(c *AgentConfig, v string) (string, string) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 3600 {
				return fmt.Sprintf("report_interval %q is not a number of seconds 1-3600", v), "write e.g. report_interval = 30"
			}
			c.ReportInterval = time.Duration(n) * time.Second
			return "", ""
		}},
		"availability_zone": {kString, func(c *AgentConfig, v string) (string, string) { c.AvailabilityZone = v; return "", "" }},
		"metrics_listen": {kString, func(c *AgentConfig, v string) (string, string) {
			if v != "" && !strings.Contains(v, ":") {
				return fmt.Sprintf("metrics_listen %q is not host:port", v), "write e.g. metrics_listen = 127.0.0.1:9476"
			}
			c.MetricsListen = v
			return "", ""
		}},
		"polling_interval": {kind: kIgnored}, "quitting_rpc_timeout": {kind: kIgnored}, "extensions": {kind: kIgnored},
		"dscp": {kind: kIgnored}, "dscp_inherit": {kind: kIgnored}, "agent_down_time": {kind: kIgnored},
	},
	"vxlan": {
		"enable_vxlan": {kMustBeTrue, func(c *AgentConfig, v string) (string, string) {
			var b bool
			if msg, fix := setBool(&b, v); msg != "" {
				return msg, fix
			}
			if !b {
				return "enable_vxlan = false: vxdp serves VXLAN tenant networks only", "write enable_vxlan = true (or remove the line)"
			}
			return "", ""
		}},
		"l2_population": {kMustBeTrue, func(c *AgentConfig, v string) (string, string) {
			if msg, fix := setBool(&c.L2Population, v); msg != "" {
				return msg, fix
			}
			if !c.L2Population {
				return "l2_population = false: vxdp always distributes FDB and ARP entries from the server (l2population) and never floods to learn", "write l2_population = true"
			}
			return "", ""
		}},
		"local_ip": {kString, func(c *AgentConfig, v string) (string, string) {
			ip, err := netip.ParseAddr(v)
			if err != nil || control.ValidVTEP(ip) != nil {
				return fmt.Sprintf("local_ip %q is not a unicast IPv4 or IPv6 address", v), "write this host's VTEP address, e.g. local_ip = 192.168.248.3"
			}
			c.LocalIP = ip
			return "", ""
		}},
		"udp_dstport": {kInt, func(c *AgentConfig, v string) (string, string) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Sprintf("udp_dstport %q is not a UDP port", v), "write udp_dstport = 8472 (Linux's default) or 4789 (IANA)"
			}
			c.VXLANPort = uint16(n)
			return "", ""
		}},
		"ttl": {kInt, func(c *AgentConfig, v string) (string, string) { return setRange(&c.TTL, "ttl", v, 0, 255) }},
		"arp_responder": {kBool, func(c *AgentConfig, v string) (string, string) {
			return setBool(&c.Dataplane.ARPResponder, v)
		}},
		"tos": {kind: kIgnored}, "vxlan_group": {kind: kIgnored}, "udp_srcport_min": {kind: kIgnored},
		"udp_srcport_max": {kind: kIgnored}, "multicast_ranges": {kind: kIgnored},
	},
	"linux_bridge": {
		"physical_interface_mappings": {kString, func(c *AgentConfig, v string) (string, string) {
			m, msg, fix := ParseInterfaceMappings(v)
			if msg == "" {
				c.PhysicalInterfaceMappings = m
			}
			return msg, fix
		}},
		"bridge_mappings": {kind: kIgnored},
	},
	"securitygroup": {
		"enable_security_group": {kBool, func(c *AgentConfig, v string) (string, string) { return setBool(&c.EnableSecurityGroup, v) }},
		"firewall_driver":       {kind: kIgnored}, "enable_ipset": {kind: kIgnored},
	},
	"nats": {
		"servers": {kString, func(c *AgentConfig, v string) (string, string) {
			urls := control.ParseURLs(v)
			for _, u := range urls {
				if !strings.Contains(u, "://") {
					return fmt.Sprintf("server %q has no scheme", u), fmt.Sprintf("write nats://%s (or tls://%s)", u, u)
				}
			}
			if len(urls) == 0 {
				return "servers is empty", "write e.g. servers = nats://10.30.1.208:4222"
			}
			c.NATS.Servers = urls
			return "", ""
		}},
		"user":           {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.User = v; return "", "" }},
		"password":       {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.Password = v; return "", "" }},
		"nkey_seed_file": {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.NKeySeedFile = v; return "", "" }},
		"creds_file":     {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.CredsFile = v; return "", "" }},
		"tls_ca_file":    {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.TLSCA = v; return "", "" }},
		"tls_cert_file":  {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.TLSCert = v; return "", "" }},
		"tls_key_file":   {kString, func(c *AgentConfig, v string) (string, string) { c.NATS.TLSKey = v; return "", "" }},
		"bucket": {kString, func(c *AgentConfig, v string) (string, string) {
			if v == "" || strings.ContainsAny(v, ". *>") {
				return fmt.Sprintf("bucket %q is not a bucket name", v), "write letters, digits, '-' or '_', e.g. bucket = vxdp"
			}
			c.NATS.Bucket = v
			return "", ""
		}},
	},
	"dataplane": {
		"enable_bpf": {kBool, func(c *AgentConfig, v string) (string, string) { return setBool(&c.Dataplane.EnableBPF, v) }},
		"xdp_mode": {kString, func(c *AgentConfig, v string) (string, string) {
			if !slices.Contains([]string{"native", "generic", "auto"}, v) {
				return fmt.Sprintf("xdp_mode %q is not a mode", v), "write xdp_mode = native, generic or auto"
			}
			c.Dataplane.XDPMode = v
			return "", ""
		}},
		"tc_mode": {kString, func(c *AgentConfig, v string) (string, string) {
			if !slices.Contains([]string{"tcx", "clsact", "auto"}, v) {
				return fmt.Sprintf("tc_mode %q is not a mode", v), "write tc_mode = tcx, clsact or auto"
			}
			c.Dataplane.TCMode = v
			return "", ""
		}},
		"bpffs": {kString, func(c *AgentConfig, v string) (string, string) {
			if !strings.HasPrefix(v, "/") {
				return fmt.Sprintf("bpffs %q is not an absolute path", v), "write e.g. bpffs = /sys/fs/bpf"
			}
			c.Dataplane.BPFFS = v
			return "", ""
		}},
		"ct_tcp_max": {kInt, func(c *AgentConfig, v string) (string, string) {
			return setRange(&c.Dataplane.CTTCPMax, "ct_tcp_max", v, 1024, 1<<24)
		}},
		"ct_other_max": {kInt, func(c *AgentConfig, v string) (string, string) {
			return setRange(&c.Dataplane.CTOtherMax, "ct_other_max", v, 1024, 1<<24)
		}},
		"dhcp": {kBool, func(c *AgentConfig, v string) (string, string) { return setBool(&c.Dataplane.DHCP, v) }},
	},
}

// strictSections are vxdp's own: an unknown option there is an error.
// In Neutron's sections an unknown option is an error only when it looks
// like a misspelt known one (a Neutron release may have options vxdp
// does not know); otherwise a warning.
var strictSections = map[string]bool{"nats": true, "dataplane": true}

// Sections of Neutron's agent files vxdp has no use for (read, ignored).
var ignoredSections = map[string]bool{"network_log": true, "ml2": true, "ovs": true, "oslo_concurrency": true, "oslo_messaging_rabbit": true, "keystone_authtoken": true, "database": true}

func setBool(dst *bool, v string) (string, string) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		*dst = true
	case "false", "no", "off", "0":
		*dst = false
	default:
		return fmt.Sprintf("%q is not a boolean", v), "write true or false"
	}
	return "", ""
}

func setRange(dst *int, name, v string, lo, hi int) (string, string) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Sprintf("%s %q is not a number %d-%d", name, v, lo, hi), fmt.Sprintf("write a number from %d to %d", lo, hi)
	}
	*dst = n
	return "", ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func parse(c *AgentConfig, files []file, hostname func() (string, error)) (*AgentConfig, error) {
	var errs []*Error
	var opts []option
	for _, f := range files {
		c.Files = append(c.Files, f.name)
		ini, ferrs := parseINI(f.name, f.data)
		errs = append(errs, ferrs...)
		for sec, line := range ini.sections {
			if schema[sec] != nil || ignoredSections[sec] {
				continue
			}
			if s := closest(sec, keys(schema)); s != "" {
				errs = append(errs, &Error{File: f.name, Line: line, Msg: fmt.Sprintf("unknown section [%s]", sec), Fix: fmt.Sprintf("did you mean [%s]?", s)})
			} else {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: section [%s] is not used by vxdp", f.name, line, sec))
			}
		}
		opts = append(opts, ini.options...)
	}
	seen := map[string]option{}
	for _, o := range opts {
		sec := schema[o.section]
		if sec == nil {
			continue
		}
		sp, ok := sec[o.key]
		if !ok {
			if s := closest(o.key, keys(sec)); s != "" {
				errs = append(errs, &Error{File: o.file, Line: o.line, Msg: fmt.Sprintf("unknown option %q in [%s]", o.key, o.section), Fix: fmt.Sprintf("did you mean %q?", s)})
			} else if strictSections[o.section] {
				errs = append(errs, &Error{File: o.file, Line: o.line, Msg: fmt.Sprintf("unknown option %q in [%s]", o.key, o.section), Fix: "valid options: " + strings.Join(keys(sec), ", ")})
			} else if o.section != "DEFAULT" {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: option %q in [%s] is not used by vxdp", o.file, o.line, o.key, o.section))
			}
			continue
		}
		id := o.section + "." + o.key
		if prev, dup := seen[id]; dup && prev.file == o.file {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: %s set again (line %d is overridden)", o.file, o.line, o.key, prev.line))
		}
		seen[id] = o
		if sp.kind == kIgnored {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: [%s] %s is a Neutron option vxdp does not use", o.file, o.line, o.section, o.key))
			continue
		}
		if msg, fix := sp.set(c, o.value); msg != "" {
			errs = append(errs, &Error{File: o.file, Line: o.line, Msg: msg, Fix: fix})
		}
	}
	c.Sources = make(map[string]Source, len(seen))
	for id, o := range seen {
		c.Sources[id] = Source{File: o.file, Line: o.line}
	}
	last := files[len(files)-1].name
	if c.Host == "" && hostname != nil {
		if h, err := hostname(); err == nil {
			c.Host = h
		}
	}
	if err := control.ValidHost(c.Host); err != nil {
		o, ok := seen["DEFAULT.host"]
		e := &Error{File: last, Msg: err.Error(), Fix: `set "host = <name>" under [DEFAULT]`}
		if ok {
			e.File, e.Line = o.file, o.line
			e.Fix = "write the host name Nova binds ports to, e.g. host = node3"
		}
		errs = append(errs, e)
	}
	// A missing option is reported only when nothing else is wrong: a
	// misspelt key or a broken line above is usually why it is missing.
	if !c.LocalIP.IsValid() && len(errs) == 0 {
		if _, bad := seen["vxlan.local_ip"]; !bad {
			errs = append(errs, &Error{File: last, Msg: "[vxlan] local_ip is not set", Fix: "add \"local_ip = <this host's VTEP address>\" under [vxlan], e.g. local_ip = 192.168.248.3"})
		}
	}
	if (c.NATS.User == "") != (c.NATS.Password == "") {
		o := seen["nats.user"]
		if o.line == 0 {
			o = seen["nats.password"]
		}
		errs = append(errs, &Error{File: o.file, Line: o.line, Msg: "[nats] user and password go together", Fix: "set both user and password, or neither"})
	}
	if (c.NATS.TLSCert == "") != (c.NATS.TLSKey == "") {
		o := seen["nats.tls_cert_file"]
		if o.line == 0 {
			o = seen["nats.tls_key_file"]
		}
		errs = append(errs, &Error{File: o.file, Line: o.line, Msg: "[nats] tls_cert_file and tls_key_file go together", Fix: "set both, or neither"})
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int {
			if a.File != b.File {
				return strings.Compare(fileOrder(files, a.File), fileOrder(files, b.File))
			}
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line - a.Line // errors without a line last
			}
			return a.Line - b.Line
		})
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return nil, errors.Join(joined...)
	}
	return c, nil
}

func fileOrder(files []file, name string) string {
	for i, f := range files {
		if f.name == name {
			return fmt.Sprintf("%04d", i)
		}
	}
	return "9999"
}

// ConnectOptions are the [nats] settings as control.ConnectOptions.
func (c *AgentConfig) ConnectOptions() control.ConnectOptions {
	return control.ConnectOptions{
		URLs: c.NATS.Servers, User: c.NATS.User, Password: c.NATS.Password, NKeySeedFile: c.NATS.NKeySeedFile,
		CredsFile: c.NATS.CredsFile, TLSCA: c.NATS.TLSCA, TLSCert: c.NATS.TLSCert, TLSKey: c.NATS.TLSKey,
		Name: "vxdp-agent " + c.Host, InboxPrefix: control.InboxPrefix(c.Host), Retry: true,
	}
}

// AgentOptions are the settings as control.AgentOptions (the caller adds
// AppliedRevision, Log, Metrics and Version).
func (c *AgentConfig) AgentOptions() control.AgentOptions {
	return control.AgentOptions{
		Host: c.Host, VTEP: c.LocalIP, StateDir: c.StateDir, Bucket: c.NATS.Bucket,
		AvailabilityZone: c.AvailabilityZone, ReportInterval: c.ReportInterval,
		Configurations: map[string]any{
			"tunnel_types": []string{"vxlan"}, "l2_population": c.L2Population, "tunneling_ip": c.LocalIP.String(),
			"udp_dstport": c.VXLANPort, "interface_mappings": c.PhysicalInterfaceMappings,
			"enable_security_group": c.EnableSecurityGroup, "bpf": c.Dataplane.EnableBPF, "dhcp": c.Dataplane.DHCP,
		},
	}
}

// ParseInterfaceMappings reads physical_interface_mappings
// ("default:eth1,external:eth3"). On a problem it returns it and the fix.
func ParseInterfaceMappings(v string) (m map[string]string, msg, fix string) {
	m = map[string]string{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		phys, dev, ok := strings.Cut(item, ":")
		phys, dev = strings.TrimSpace(phys), strings.TrimSpace(dev)
		if !ok || phys == "" || dev == "" || len(dev) > 15 || strings.ContainsAny(dev, " /") {
			return nil, fmt.Sprintf("physical_interface_mappings entry %q is not <physical_network>:<interface>", item), "write e.g. physical_interface_mappings = default:eth1"
		}
		if _, dup := m[phys]; dup {
			return nil, fmt.Sprintf("physical network %q is mapped twice", phys), "keep one <physical_network>:<interface> per physical network"
		}
		m[phys] = dev
	}
	return m, "", ""
}
