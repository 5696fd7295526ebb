package control

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
)

// pid is a port or network id in fixed size: a UUID's 16 bytes, so that
// a view of 100,000 ports keeps no id strings (and no key or subject they
// would be cut from). Ids that are not UUIDs (accepted when key-safe) are
// numbered by the view's idTable; the last byte tells the two apart.
type pid [17]byte

const pidInterned = 1

// idTable turns ids into pids and back.
type idTable struct {
	byName map[string]pid
	names  []string
}

// of is the pid of id.
func (t *idTable) of(id string) pid {
	var p pid
	if IsUUID(id) {
		hex.Decode(p[0:4], []byte(id[0:8]))
		hex.Decode(p[4:6], []byte(id[9:13]))
		hex.Decode(p[6:8], []byte(id[14:18]))
		hex.Decode(p[8:10], []byte(id[19:23]))
		hex.Decode(p[10:16], []byte(id[24:36]))
		return p
	}
	if p, ok := t.byName[id]; ok {
		return p
	}
	if t.byName == nil {
		t.byName = map[string]pid{}
	}
	binary.BigEndian.PutUint64(p[:8], uint64(len(t.names)))
	p[16] = pidInterned
	t.names = append(t.names, id)
	t.byName[id] = p
	return p
}

// find is the pid of id if it has one (a UUID always has).
func (t *idTable) find(id string) (pid, bool) {
	if IsUUID(id) {
		return t.of(id), true
	}
	p, ok := t.byName[id]
	return p, ok
}

// compare orders pids as their ids: a UUID's bytes are in the order of
// its hex digits.
func (t *idTable) compare(a, b pid) int {
	if a[16] != pidInterned && b[16] != pidInterned {
		return bytes.Compare(a[:16], b[:16])
	}
	return strings.Compare(t.name(a), t.name(b))
}

// name is the id of p.
func (t *idTable) name(p pid) string {
	if p[16] == pidInterned {
		return t.names[binary.BigEndian.Uint64(p[:8])]
	}
	b := uuidText(p)
	return string(b[:])
}

// key is prefix + the id of p, in one allocation.
func (t *idTable) key(prefix string, p pid) string {
	if p[16] == pidInterned {
		return prefix + t.name(p)
	}
	b := uuidText(p)
	var s strings.Builder
	s.Grow(len(prefix) + len(b))
	s.WriteString(prefix)
	s.Write(b[:])
	return s.String()
}

func uuidText(p pid) [36]byte {
	var b [36]byte
	hex.Encode(b[0:8], p[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], p[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], p[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], p[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], p[10:16])
	return b
}

// hostID numbers the host names a view knows (0: no host).
type hostID uint32

// hostTable turns host names into hostIDs and back.
type hostTable struct {
	byName map[string]hostID
	names  []string // names[0] is ""
}

func (t *hostTable) of(name string) hostID {
	if name == "" {
		return 0
	}
	if h, ok := t.byName[name]; ok {
		return h
	}
	if t.byName == nil {
		t.byName, t.names = map[string]hostID{}, []string{""}
	}
	h := hostID(len(t.names))
	t.names = append(t.names, name)
	t.byName[name] = h
	return h
}

func (t *hostTable) find(name string) (hostID, bool) {
	h, ok := t.byName[name]
	return h, ok
}

func (t *hostTable) name(h hostID) string {
	if h == 0 {
		return ""
	}
	return t.names[h]
}

// vtepID numbers the VTEP addresses (IPv4 or IPv6) a view's state holds
// remote ports at, so that a port entry keeps 4 bytes, not an address
// (0: no VTEP, a provider network's port).
type vtepID uint32

// vtepTable turns VTEP addresses into vtepIDs and back. Entries are never
// removed: there are as many as VTEPs ever seen, a few per host.
type vtepTable struct {
	byAddr map[netip.Addr]vtepID
	addrs  []netip.Addr // addrs[0] is the zero Addr (no VTEP)
}

func (t *vtepTable) of(a netip.Addr) vtepID {
	if !a.IsValid() {
		return 0
	}
	if id, ok := t.byAddr[a]; ok {
		return id
	}
	if t.byAddr == nil {
		t.byAddr, t.addrs = map[netip.Addr]vtepID{}, []netip.Addr{{}}
	}
	id := vtepID(len(t.addrs))
	t.addrs = append(t.addrs, a)
	t.byAddr[a] = id
	return id
}

func (t *vtepTable) addr(id vtepID) netip.Addr {
	if id == 0 {
		return netip.Addr{}
	}
	return t.addrs[id]
}
