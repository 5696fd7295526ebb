package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ---- hosts: VTEP registrations ----

// HostInfo is a host's registration with what its agent claims.
type HostInfo struct {
	Host string `json:"host"`
	// Registration is nil when the host is not registered.
	Registration *RegistrationRecord `json:"registration,omitempty"`
	Revision     uint64              `json:"revision,omitempty"`
	// AgentVTEP is the VTEP the host's agent record claims (invalid: no agent).
	AgentVTEP netip.Addr `json:"agent_vtep,omitzero"`
}

// Mismatch reports an agent claiming another VTEP than the registered one
// (the claim is not used for forwarding).
func (h HostInfo) Mismatch() bool {
	return h.Registration != nil && h.AgentVTEP.IsValid() && h.AgentVTEP != h.Registration.VTEP
}

// RegisterHost registers vtep as the VTEP of host (`vxdp host add`). A host
// registered with another VTEP keeps it unless replace is set; registering
// the same VTEP again makes the registration the controller's.
func (c *Controller) RegisterHost(ctx context.Context, host string, vtep netip.Addr, replace bool) (HostInfo, error) {
	if err := ValidHost(host); err != nil {
		return HostInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := ValidVTEP(vtep); err != nil {
		return HostInfo{}, fmt.Errorf("%w: --vtep: %v", ErrInvalid, err)
	}
	key := RegistrationKey(host)
	rec := &RegistrationRecord{Host: host, VTEP: vtep, RegisteredBy: RegisteredByController, CreatedAt: now()}
	cur, rev, err := c.get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		rev, err = c.create(ctx, key, rec)
	case err != nil:
		return HostInfo{}, err
	default:
		old := cur.(*RegistrationRecord)
		if old.VTEP != vtep && !replace {
			return HostInfo{}, fmt.Errorf("host %s is registered with VTEP %s (by %s): %w; add --replace to change it", host, old.VTEP, old.RegisteredBy, ErrExists)
		}
		if old.VTEP == vtep && old.RegisteredBy == RegisteredByController {
			return HostInfo{Host: host, Registration: old, Revision: rev}, nil
		}
		rev, err = c.update(ctx, key, rec, rev)
	}
	if err != nil {
		return HostInfo{}, err
	}
	return HostInfo{Host: host, Registration: rec, Revision: rev}, nil
}

// DeleteHost removes a decommissioned host from the control plane: its
// registration, agent record and heartbeat. An agent still running on it
// registers again (first registration wins).
func (c *Controller) DeleteHost(ctx context.Context, host string) error {
	if err := ValidHost(host); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	found := false
	for _, key := range []string{RegistrationKey(host), AgentKey(host), HeartbeatKey(host)} {
		if _, err := c.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		found = true
		if err := c.del(ctx, key, 0); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("host %s: %w", host, ErrNotFound)
	}
	return nil
}

// ListHosts returns every registered host and every host with an agent
// record, sorted by name.
func (c *Controller) ListHosts(ctx context.Context) ([]HostInfo, error) {
	recs, err := c.load(ctx, RegistrationsFilter, AgentsFilter)
	if err != nil {
		return nil, err
	}
	return hostInfos(recs), nil
}

// hostInfos joins registrations and agent records by host.
func hostInfos(recs []loadedRecord) []HostInfo {
	byHost := map[string]*HostInfo{}
	get := func(host string) *HostInfo {
		if byHost[host] == nil {
			byHost[host] = &HostInfo{Host: host}
		}
		return byHost[host]
	}
	for _, r := range recs {
		switch rec := r.Rec.(type) {
		case *RegistrationRecord:
			h := get(rec.Host)
			h.Registration, h.Revision = rec, r.Rev
		case *AgentRecord:
			get(rec.Host).AgentVTEP = rec.VTEP
		}
	}
	out := make([]HostInfo, 0, len(byHost))
	for _, h := range byHost {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// ---- agents ----

// AgentInfo is an agent with its liveness.
type AgentInfo struct {
	AgentRecord
	// HeartbeatAt is when the server stored the last heartbeat (zero if none).
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// AppliedRevision is the last revision the agent reported applied.
	AppliedRevision uint64 `json:"applied_revision,omitempty"`
	// Alive is a heartbeat younger than the down time.
	Alive bool `json:"alive"`
	// RegisteredVTEP is the host's registered VTEP, the one other hosts
	// use (invalid: not registered). When it differs from VTEP, the
	// agent's claim is ignored.
	RegisteredVTEP netip.Addr `json:"registered_vtep,omitzero"`
}

// VTEPMismatch reports an agent whose VTEP is not its host's registered one.
func (a AgentInfo) VTEPMismatch() bool {
	return a.RegisteredVTEP.IsValid() && a.RegisteredVTEP != a.VTEP
}

// DefaultAgentDownTime is Neutron's agent_down_time.
const DefaultAgentDownTime = 75 * time.Second

// ListAgents returns every registered agent; an agent is alive when its
// last heartbeat is younger than downTime (default DefaultAgentDownTime).
// Heartbeat age uses the server's timestamp of the heartbeat message.
func (c *Controller) ListAgents(ctx context.Context, downTime time.Duration) ([]AgentInfo, error) {
	return ListAgents(ctx, c.js, c.bucket, downTime, c.log)
}

// ListAgents is Controller.ListAgents for any connection allowed to read
// the bucket.
func ListAgents(ctx context.Context, js jetstream.JetStream, bucket string, downTime time.Duration, log *slog.Logger) ([]AgentInfo, error) {
	if downTime <= 0 {
		downTime = DefaultAgentDownTime
	}
	if log == nil {
		log = slog.Default()
	}
	recs, err := directReader(js, bucket, log).loadRecords(ctx, []string{AgentsFilter, HeartbeatsFilter, RegistrationsFilter}, nil)
	if err != nil {
		return nil, err
	}
	hb := map[string]loadedRecord{}
	regs := map[string]netip.Addr{}
	var out []AgentInfo
	for _, r := range recs {
		switch rec := r.Rec.(type) {
		case *HeartbeatRecord:
			hb[rec.Host] = r
		case *RegistrationRecord:
			regs[rec.Host] = rec.VTEP
		case *AgentRecord:
			out = append(out, AgentInfo{AgentRecord: *rec})
		}
	}
	t := time.Now()
	for i := range out {
		out[i].RegisteredVTEP = regs[out[i].Host]
		if h, ok := hb[out[i].Host]; ok {
			out[i].HeartbeatAt = h.Created
			out[i].AppliedRevision = h.Rec.(*HeartbeatRecord).AppliedRevision
			out[i].Alive = t.Sub(h.Created) < downTime
		}
	}
	slices.SortFunc(out, func(a, b AgentInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
