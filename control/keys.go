package control

// This file is the ONE place where the NATS key-value keys and subjects of the
// control plane are spelt. Everything else (controller, agent watcher,
// permissions, docs/control-plane.md) builds them through these functions.
//
// Layout of the bucket (default name "vxdp"; stream "KV_vxdp"; a key K is
// stored on subject "$KV.vxdp.K"):
//
//	nets.<net>.network                network record                     written by the controller
//	nets.<net>.ports.<port>           port record (incl. bound host)     written by the controller
//	nets.<net>.status.<host>.<port>   port status ACTIVE/DOWN            for the agent of <host>, by the broker
//	hosts.<host>.agent                agent record (claimed VTEP, ...)   for the agent of <host>, by the broker
//	hosts.<host>.heartbeat            liveness heartbeat                 for the agent of <host>, by the broker
//	hosts.<host>.registration         the host's VTEP other hosts use    written by the controller (first registration: the broker)
//	bindings.<host>.<port>            "port is bound to host" index      written by the controller
//	sgs.<sg>                          security group with its rules      written by the controller
//	members.<sg>.<port>               addresses of a port in a group     written by the controller
//	addrgroups.<ag>                   address group (named prefixes)     written by the controller
//	vnis.<vni>                        VNI allocation (create-only)       written by the controller
//	resv.<net>.mac.<mac>              MAC reservation per network        written by the controller
//	resv.<net>.ip.<hex ip>            fixed-IP reservation per network   written by the controller
//	meta.compacted                    tombstone compaction floor         written by the controller
//	meta.quotas                       per-project quotas                 written by the server
//
// Why this shape:
//   - Everything about one network sits under "nets.<net>.", so an agent
//     follows a network it hosts with ONE filter ("nets.<net>.>") and never
//     receives records of networks it does not host (l2pop semantics).
//   - An agent learns which networks it hosts from "bindings.<host>.*"
//     (one small record per port bound to it), not by reading every port.
//   - Agents write nothing themselves: the broker (broker.go) writes their
//     agent record, heartbeat and port statuses after checking them. Its
//     request subjects carry the host token at a fixed position, so NATS
//     subject permissions tie each agent credential to its own host (see
//     AgentPermissions).
//   - A host's VTEP comes from its registration, which only the controller
//     changes, not from the agent record the host's agent describes itself
//     with.
//   - Port status lives in its own key per host, separate from the
//     controller-owned port record, so agents never write port records.
//   - A group's members (the addresses of its ports) are kept by the
//     controller under "members.<sg>.", one key per port: an agent whose
//     ports' rules name the group as remote group follows them with one
//     filter, whatever networks the members are on, and reads no port
//     record of a network it does not host.
//
// Host names become one key token: dots are replaced by underscores
// ("node3.example.com" -> "node3_example_com"). Host names must be RFC 1123
// names (letters, digits, '-', '.'), so the mapping is reversible.

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vxdp/vxdp/state"
)

// DefaultBucket is the name of the key-value bucket holding the control plane.
const DefaultBucket = "vxdp"

// KeyKind says which record a key holds.
type KeyKind int

// Kinds of keys in the bucket.
const (
	KindUnknown      KeyKind = iota
	KindNetwork              // nets.<net>.network
	KindPort                 // nets.<net>.ports.<port>
	KindStatus               // nets.<net>.status.<host>.<port>
	KindAgent                // hosts.<host>.agent
	KindHeartbeat            // hosts.<host>.heartbeat
	KindBinding              // bindings.<host>.<port>
	KindSecGroup             // sgs.<sg>
	KindVNI                  // vnis.<vni>
	KindMACResv              // resv.<net>.mac.<mac>
	KindIPResv               // resv.<net>.ip.<hex>
	KindFloor                // meta.compacted
	KindRegistration         // hosts.<host>.registration
	KindMember               // members.<sg>.<port>
	KindAddressGroup         // addrgroups.<ag>
	KindQuota                // meta.quotas
	KindSegment              // vlans.<physnet>.<vlan>, flats.<physnet>
	KindML2                  // meta.ml2
)

var kindNames = map[KeyKind]string{
	KindUnknown: "unknown", KindNetwork: "network", KindPort: "port", KindStatus: "status",
	KindAgent: "agent", KindHeartbeat: "heartbeat", KindBinding: "binding", KindSecGroup: "security_group",
	KindVNI: "vni", KindMACResv: "mac_reservation", KindIPResv: "ip_reservation", KindFloor: "floor",
	KindRegistration: "registration", KindMember: "member", KindAddressGroup: "address_group", KindQuota: "quota",
	KindSegment: "segment", KindML2: "ml2",
}

// String names the kind (the "kind" label of metrics).
func (k KeyKind) String() string { return kindNames[k] }

// Key is a parsed bucket key.
type Key struct {
	Kind    KeyKind
	Network string // network id (network, port, status, reservations)
	Port    string // port id (port, status, binding)
	Host    string // host name, decoded (status, agent, heartbeat, registration, binding)
	SG      string // security group id (security group, member)
	AG      string // address group id
	VNI     uint32
	// Physnet and VLAN of a segment reservation (VLAN 0: a flat network).
	Physnet string
	VLAN    uint16
}

// NetworkKey is the key of a network record.
func NetworkKey(netID string) string { return "nets." + netID + ".network" }

// PortKey is the key of a port record.
func PortKey(netID, portID string) string { return "nets." + netID + ".ports." + portID }

// StatusKey is the key of the status of a port as reported by the agent of host.
func StatusKey(netID, host, portID string) string {
	return "nets." + netID + ".status." + HostToken(host) + "." + portID
}

// AgentKey is the key of the agent record of host.
func AgentKey(host string) string { return "hosts." + HostToken(host) + ".agent" }

// HeartbeatKey is the key of the heartbeat of the agent of host.
func HeartbeatKey(host string) string { return "hosts." + HostToken(host) + ".heartbeat" }

// RegistrationKey is the key of the registration of host: the VTEP address
// every other host sends its traffic to.
func RegistrationKey(host string) string { return "hosts." + HostToken(host) + ".registration" }

// BindingKey is the key of the index entry saying port is bound to host.
func BindingKey(host, portID string) string { return "bindings." + HostToken(host) + "." + portID }

// SecGroupKey is the key of a security group record.
func SecGroupKey(sgID string) string { return "sgs." + sgID }

// MemberKey is the key of the addresses of port as a member of security group sg.
func MemberKey(sgID, portID string) string { return "members." + sgID + "." + portID }

// MembersFilter matches the members of one security group.
func MembersFilter(sgID string) string { return "members." + sgID + ".*" }

// AllMembersFilter matches the members of every security group.
const AllMembersFilter = "members.*.*"

// AddressGroupKey is the key of an address group record.
func AddressGroupKey(agID string) string { return "addrgroups." + agID }

// AddressGroupsFilter matches every address group.
const AddressGroupsFilter = "addrgroups.*"

// QuotaKey holds the per-project quotas `vxdp server` enforces.
const QuotaKey = "meta.quotas"

// VNIKey is the key reserving a VNI for a network.
func VNIKey(vni uint32) string { return "vnis." + strconv.FormatUint(uint64(vni), 10) }

// VLANKey is the key reserving VLAN vlan of physical network physnet for
// a network.
func VLANKey(physnet string, vlan uint16) string {
	return "vlans." + physnet + "." + strconv.FormatUint(uint64(vlan), 10)
}

// VLANsFilter matches the VLAN reservations of a physical network.
func VLANsFilter(physnet string) string { return "vlans." + physnet + ".*" }

// FlatKey is the key reserving physical network physnet for its flat network.
func FlatKey(physnet string) string { return "flats." + physnet }

// ML2Key holds the provider network options `vxdp server` stores and
// every controller enforces (Neutron's network_vlan_ranges, flat_networks).
const ML2Key = "meta.ml2"

// MACResvKey is the key reserving a MAC address on a network.
func MACResvKey(netID string, mac state.MAC) string {
	return "resv." + netID + ".mac." + strings.ReplaceAll(mac.String(), ":", "-")
}

// IPResvKey is the key reserving a fixed IP address on a network.
func IPResvKey(netID string, ip netip.Addr) string {
	return "resv." + netID + ".ip." + hex.EncodeToString(ip.AsSlice())
}

// FloorKey holds the compaction floor: an agent whose last applied revision
// is below it cannot resume by replaying changes and must resync fully.
const FloorKey = "meta.compacted"

// Watch filters (key patterns, without the "$KV.<bucket>." prefix).

// NetworkFilter matches every key of one network: its record, ports and statuses.
func NetworkFilter(netID string) string { return "nets." + netID + ".>" }

// BindingsFilter matches the binding index entries of one host.
func BindingsFilter(host string) string { return "bindings." + HostToken(host) + ".*" }

// AgentsFilter matches every agent record (not heartbeats).
const AgentsFilter = "hosts.*.agent"

// RegistrationsFilter matches every host registration.
const RegistrationsFilter = "hosts.*.registration"

// HeartbeatsFilter matches every heartbeat.
const HeartbeatsFilter = "hosts.*.heartbeat"

// NetworksFilter matches every network record.
const NetworksFilter = "nets.*.network"

// PortsFilter matches every port record.
const PortsFilter = "nets.*.ports.*"

// PortsOfNetworkFilter matches the port records of one network.
func PortsOfNetworkFilter(netID string) string { return "nets." + netID + ".ports.*" }

// PortByIDFilter matches the record of one port whatever its network.
func PortByIDFilter(portID string) string { return "nets.*.ports." + portID }

// StatusesOfPortFilter matches every host's status of one port.
func StatusesOfPortFilter(netID, portID string) string {
	return "nets." + netID + ".status.*." + portID
}

// StatusesFilter matches every port status.
const StatusesFilter = "nets.*.status.*.*"

// parseEntitledFilter recognises a filter an agent may use only while it
// hosts what the filter follows: a network's (NetworkFilter, kind
// KindNetwork), a security group's (SecGroupKey, kind KindSecGroup), the
// members of a group its ports' rules name as remote group (MembersFilter,
// kind KindMember) or an address group they name (AddressGroupKey, kind
// KindAddressGroup).
func parseEntitledFilter(f string) (KeyKind, string, bool) {
	if id, ok := strings.CutPrefix(f, "sgs."); ok && ValidID(id) == nil {
		return KindSecGroup, id, true
	}
	if id, ok := strings.CutPrefix(f, "addrgroups."); ok && ValidID(id) == nil {
		return KindAddressGroup, id, true
	}
	if rest, ok := strings.CutPrefix(f, "members."); ok {
		if id, ok := strings.CutSuffix(rest, ".*"); ok && ValidID(id) == nil {
			return KindMember, id, true
		}
	}
	rest, ok := strings.CutPrefix(f, "nets.")
	if id, ok2 := strings.CutSuffix(rest, ".>"); ok && ok2 && ValidID(id) == nil {
		return KindNetwork, id, true
	}
	return KindUnknown, "", false
}

// SecGroupsFilter matches every security group.
const SecGroupsFilter = "sgs.*"

// VNIsFilter matches every VNI allocation.
const VNIsFilter = "vnis.*"

// ReservationsOfNetworkFilter matches the MAC and IP reservations of a network.
func ReservationsOfNetworkFilter(netID string) string { return "resv." + netID + ".>" }

// Subjects.

// StreamName is the JetStream stream backing a bucket.
func StreamName(bucket string) string { return "KV_" + bucket }

// KeySubject is the subject a key is stored on.
func KeySubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// KeyPrefix is the subject prefix of every key of a bucket.
func KeyPrefix(bucket string) string { return "$KV." + bucket + "." }

// AppliedSubject is the core NATS subject on which the agent of host
// announces every apply (ApplyReport), for convergence measurements.
func AppliedSubject(bucket, host string) string {
	return "vxdp." + bucket + ".applied." + HostToken(host)
}

// AppliedWildcard matches the apply reports of every agent.
func AppliedWildcard(bucket string) string { return "vxdp." + bucket + ".applied.*" }

// InboxPrefix is the prefix of every subject an agent receives on: broker
// replies and the messages of its consumers. Agent credentials may
// subscribe only below it, and the broker answers and delivers nowhere else.
func InboxPrefix(host string) string { return "_INBOX_" + HostToken(host) }

// APISubject is the subject of the broker operation op requested by the
// agent of host (see Broker).
func APISubject(bucket, host, op string) string {
	return "vxdp." + bucket + ".api." + HostToken(host) + "." + op
}

// APIWildcard matches the broker requests of every agent.
func APIWildcard(bucket string) string { return "vxdp." + bucket + ".api.*.>" }

// parseAPISubject returns the host and operation of a broker request subject.
func parseAPISubject(bucket, subject string) (host, op string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "vxdp."+bucket+".api.")
	if !ok {
		return "", "", false
	}
	tok, op, ok := strings.Cut(rest, ".")
	if !ok || tok == "" || op == "" {
		return "", "", false
	}
	return HostFromToken(tok), op, true
}

// BrokerQueue is the queue group of the brokers: each request is served by one.
const BrokerQueue = "vxdp-broker"

// Names and tokens.

// Validation is hand-written rather than regular expressions: agents run
// it on every record they receive (hundreds of thousands at a full load).

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidHost checks that h is an RFC 1123 host name usable in keys.
func ValidHost(h string) error {
	bad := len(h) == 0 || len(h) > 253
	for label := range strings.SplitSeq(h, ".") {
		if bad {
			break
		}
		n := len(label)
		bad = n == 0 || n > 63 || !isAlnum(label[0]) || !isAlnum(label[n-1])
		for i := 0; i < n && !bad; i++ {
			bad = !isAlnum(label[i]) && label[i] != '-'
		}
	}
	if bad {
		return fmt.Errorf("invalid host %q: want an RFC 1123 host name (letters, digits, '-', '.'), e.g. node3", h)
	}
	return nil
}

// ValidID checks that id can be one key token (ids are UUIDs when vxdp
// makes them; other ids are accepted if they are key-safe).
func ValidID(id string) error {
	bad := len(id) == 0 || len(id) > 64
	for i := 0; i < len(id) && !bad; i++ {
		bad = !isAlnum(id[i]) && id[i] != '-' && id[i] != '_'
	}
	if bad {
		return fmt.Errorf("invalid id %q: want 1-64 of [A-Za-z0-9_-], e.g. a UUID", id)
	}
	return nil
}

// IsUUID reports whether s is a lower-case RFC 4122 UUID string.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// HostToken is host as one key token (dots become underscores).
func HostToken(host string) string { return strings.ReplaceAll(host, ".", "_") }

// HostFromToken reverses HostToken.
func HostFromToken(tok string) string { return strings.ReplaceAll(tok, "_", ".") }

// ParseKey parses a key of the bucket. Unknown layouts give KindUnknown.
func ParseKey(key string) Key {
	t := strings.Split(key, ".")
	switch {
	case len(t) == 3 && t[0] == "nets" && t[2] == "network":
		return Key{Kind: KindNetwork, Network: t[1]}
	case len(t) == 4 && t[0] == "nets" && t[2] == "ports":
		return Key{Kind: KindPort, Network: t[1], Port: t[3]}
	case len(t) == 5 && t[0] == "nets" && t[2] == "status":
		return Key{Kind: KindStatus, Network: t[1], Host: HostFromToken(t[3]), Port: t[4]}
	case len(t) == 3 && t[0] == "hosts" && t[2] == "agent":
		return Key{Kind: KindAgent, Host: HostFromToken(t[1])}
	case len(t) == 3 && t[0] == "hosts" && t[2] == "heartbeat":
		return Key{Kind: KindHeartbeat, Host: HostFromToken(t[1])}
	case len(t) == 3 && t[0] == "hosts" && t[2] == "registration":
		return Key{Kind: KindRegistration, Host: HostFromToken(t[1])}
	case len(t) == 3 && t[0] == "bindings":
		return Key{Kind: KindBinding, Host: HostFromToken(t[1]), Port: t[2]}
	case len(t) == 2 && t[0] == "sgs":
		return Key{Kind: KindSecGroup, SG: t[1]}
	case len(t) == 3 && t[0] == "members":
		return Key{Kind: KindMember, SG: t[1], Port: t[2]}
	case len(t) == 2 && t[0] == "addrgroups":
		return Key{Kind: KindAddressGroup, AG: t[1]}
	case len(t) == 2 && t[0] == "vnis":
		v, err := strconv.ParseUint(t[1], 10, 32)
		if err != nil {
			return Key{}
		}
		return Key{Kind: KindVNI, VNI: uint32(v)}
	case len(t) == 3 && t[0] == "vlans":
		v, err := strconv.ParseUint(t[2], 10, 12)
		if err != nil || v == 0 {
			return Key{}
		}
		return Key{Kind: KindSegment, Physnet: t[1], VLAN: uint16(v)}
	case len(t) == 2 && t[0] == "flats":
		return Key{Kind: KindSegment, Physnet: t[1]}
	case len(t) == 4 && t[0] == "resv" && t[2] == "mac":
		return Key{Kind: KindMACResv, Network: t[1]}
	case len(t) == 4 && t[0] == "resv" && t[2] == "ip":
		return Key{Kind: KindIPResv, Network: t[1]}
	case key == FloorKey:
		return Key{Kind: KindFloor}
	case key == QuotaKey:
		return Key{Kind: KindQuota}
	case key == ML2Key:
		return Key{Kind: KindML2}
	}
	return Key{}
}

// Permissions are the publish/subscribe subject lists of one NATS user, in
// the shape of nats-server's authorization block.
type Permissions struct {
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
	// AllowResponses lets the user answer requests it received (once each)
	// on their reply subjects, whatever the publish list says.
	AllowResponses bool `json:"allow_responses,omitempty"`
}

// AgentPermissions are what the agent of host needs, and no more: it asks
// the broker, on its own request subjects, to write its agent record,
// heartbeat and port statuses and to make its consumers; it publishes its
// apply reports and answers the flow control of its consumers. It receives
// only below InboxPrefix(host): broker replies and its consumers' messages.
//
// It may publish nothing that the bucket's stream captures and no
// JetStream API request: the server sends API responses (and pull
// consumers their messages) to whatever reply subject the requester names,
// without checking it against the requester's permissions, so an agent
// allowed any of them could make the server write to any key of the bucket.
func AgentPermissions(bucket, host string) Permissions {
	stream := StreamName(bucket)
	return Permissions{
		Publish: []string{
			"vxdp." + bucket + ".api." + HostToken(host) + ".>",
			AppliedSubject(bucket, host),
			// Flow-control replies (v1 and v2 subject forms); the server
			// answers none of them.
			"$JS.FC." + stream + ".>",
			"$JS.FC.*.*." + stream + ".>",
		},
		Subscribe: []string{InboxPrefix(host) + ".>"},
	}
}

// ControllerPermissions are those of the controller (the neutron-server
// role, `vxdp network/port/sg/host` commands and the broker): it owns the
// bucket, and answers the agents' requests.
func ControllerPermissions(bucket string) Permissions {
	return Permissions{
		Publish:        []string{KeyPrefix(bucket) + ">", "$JS.API.>", "$JS.FC.>", "vxdp." + bucket + ".>"},
		Subscribe:      []string{"_INBOX.>", "vxdp." + bucket + ".>"},
		AllowResponses: true,
	}
}
