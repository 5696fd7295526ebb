package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/state"
)

// natsKey names the NATS server among the lab's processes.
const natsKey = "nats"

// NATSControl is the NATS mode: `vxdp server` (embedded NATS with
// JetStream) runs in node1's namespace on its management address, as
// neutron-server runs on the seed's controller; the lab plays the
// controller through control.Controller, and agents follow the KV bucket.
type NATSControl struct{ l *Lab }

func (n *NATSControl) AgentArgs(node string) []string {
	return []string{"--nats", NATSURL(), "--host", node}
}

// Start runs the server and waits until it serves clients.
func (n *NATSControl) Start(ctx context.Context) error { return n.l.StartNATS(ctx) }

// Publish creates the lab's networks, their subnets and the ports (with
// the seed's ids, so the taps keep their Neutron names) bound to their
// nodes, as an operator would with `vxdp network|subnet|port create`.
// Records that already exist are left as they are.
func (n *NATSControl) Publish(ctx context.Context) error {
	ctl, done, err := n.l.Controller(ctx)
	if err != nil {
		return err
	}
	defer done()
	for _, net := range n.l.Networks() {
		if err := publishNetwork(ctx, ctl, net); err != nil {
			return err
		}
	}
	for _, p := range n.l.Ports() {
		lp := n.l.localPort(p)
		_, err := ctl.CreatePort(ctx, control.PortSpec{ID: p.ID, Name: p.Name, Network: p.NetworkID, MAC: p.MAC,
			FixedIPs: lp.IPs, AllowedAddressPairs: lp.AllowedAddressPairs, Host: p.Node,
			NoPortSecurity: !lp.SecurityEnabled(), DNSName: lp.DNSName})
		if err != nil && !errors.Is(err, control.ErrExists) {
			return fmt.Errorf("create port %s: %w", p.Name, err)
		}
	}
	return nil
}

// publishNetwork creates net and those of its subnets it lacks.
func publishNetwork(ctx context.Context, ctl *control.Controller, net state.Network) error {
	_, err := ctl.CreateNetwork(ctx, control.NetworkSpec{ID: net.ID, Name: net.Name, NetworkType: net.Type, VNI: net.VNI,
		PhysicalNetwork: net.PhysicalNetwork, Segment: uint32(net.VLAN), MTU: net.MTU, DNSDomain: net.DNSDomain})
	if err != nil && !errors.Is(err, control.ErrExists) {
		return fmt.Errorf("create network %s: %w", net.Name, err)
	}
	have, err := ctl.GetNetwork(ctx, net.ID)
	if err != nil {
		return err
	}
	for _, s := range net.Subnets {
		if slices.Contains(have.CIDRs(), s.CIDR) {
			continue
		}
		_, err := ctl.CreateSubnet(ctx, control.SubnetSpec{Network: net.ID, Name: net.Name + "-subnet", CIDR: s.CIDR,
			Gateway: s.Gateway, NoGateway: !s.Gateway.IsValid(), DNS: s.DNS, NoDHCP: !s.DHCP, DHCPServer: s.DHCPServer,
			LeaseSeconds: s.LeaseSeconds})
		if err != nil {
			return fmt.Errorf("create subnet %s of network %s: %w", s.CIDR, net.Name, err)
		}
	}
	return nil
}

// Controller connects to the lab's NATS server from the controller node's
// namespace and returns a controller and its closer. The connection does
// not survive a server restart: take a new one after StartNATS.
func (l *Lab) Controller(ctx context.Context) (*control.Controller, func(), error) {
	ctl, nc, err := l.controller(ctx)
	if err != nil {
		return nil, nil, err
	}
	return ctl, nc.Close, nil
}

func (l *Lab) controller(ctx context.Context) (*control.Controller, *nats.Conn, error) {
	nc, err := control.Connect(ctx, control.ConnectOptions{URLs: []string{NATSURL()}, Name: "vxdp-lab",
		Dialer: nsDialer(l.NS(ControllerNode))})
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the lab's NATS server: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(l.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctl, err := control.NewController(ctx, nc, control.ControllerOptions{Log: quiet})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return ctl, nc, nil
}

// Migrate live-migrates port p to node as Nova would: the VM's NIC moves
// (MovePort), then its port is re-bound with a compare-and-set, and the
// result says when each agent applied the move.
func (l *Lab) Migrate(ctx context.Context, p Port, node string) (control.MigrationResult, error) {
	ctl, nc, err := l.controller(ctx)
	if err != nil {
		return control.MigrationResult{}, err
	}
	defer nc.Close()
	w, err := control.WatchApplies(nc, "")
	if err != nil {
		return control.MigrationResult{}, err
	}
	defer w.Stop()
	if _, err := l.MovePort(p, node); err != nil {
		return control.MigrationResult{}, err
	}
	return ctl.MigratePort(ctx, w, p.ID, node)
}

// nsDialer makes TCP connections from inside a namespace, so the lab's
// client reaches the management network (and never the host's).
type nsDialer string

func (ns nsDialer) Dial(network, address string) (c net.Conn, err error) {
	err = Do(string(ns), func() (err error) {
		c, err = net.DialTimeout(network, address, 5*time.Second)
		return err
	})
	return c, err
}

// StartNATS starts the lab's NATS server (again, after StopNATS) and waits
// until it serves clients.
func (l *Lab) StartNATS(ctx context.Context) error {
	ready := filepath.Join(l.Dir, "nats.ready")
	_ = os.Remove(ready)
	args := []string{"server", "--netns", l.NS(ControllerNode), "--listen", MgmtIP(ControllerNode).String() + ":4222",
		"--store", l.NATSStore(), "--ready-file", ready, "--log-level", "warn",
		// The seed's ml2 options: vlan99 and the flat network are allowed.
		"--network-vlan-ranges", PhysDefault + ":1:4000", "--flat-networks", PhysExternal}
	a, err := l.spawn(natsKey, args, l.NATSLog())
	if err != nil {
		return fmt.Errorf("start nats server: %w", err)
	}
	if err := l.writeManifest(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		raw, err := os.ReadFile(ready)
		var info struct{ URL string }
		if err == nil && json.Unmarshal(raw, &info) == nil && info.URL != "" {
			fmt.Fprintf(l.log, "started nats server on %s (pid %d), log %s\n", NATSURL(), a.pid, l.NATSLog())
			return nil
		}
		if !a.running() {
			return fmt.Errorf("nats server exited: %v; log %s", a.err, l.NATSLog())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats server not ready: %w; log %s", ctx.Err(), l.NATSLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopNATS stops the lab's NATS server (a control-plane outage).
func (l *Lab) StopNATS() error { return l.StopAgent(natsKey) }

// natsPIDs finds the running NATS servers of a lab.
func natsPIDs(c Config) []int {
	return pidsOf(func(pid int) bool { return cmdlineMatches(pid, "server", "--store", c.NATSStore()) })
}

// expectedFDB is what node's vxlan devices must hold once its agent has
// applied the lab's state: the provenance keys of its kernel FDB entries.
func (l *Lab) expectedFDB(node string) []string {
	var keys []string
	d := l.DesiredState(node)
	for _, n := range d.Networks {
		for _, v := range d.FloodList(n.ID) {
			keys = append(keys, "kernel/fdb/"+state.MAC{}.String()+" dst "+v.IP.String())
		}
	}
	for _, p := range d.RemotePorts {
		if p.VTEP.IsValid() { // provider networks have no l2pop entries
			keys = append(keys, "kernel/fdb/"+p.MAC.String()+" dst "+p.VTEP.String())
		}
	}
	return keys
}
