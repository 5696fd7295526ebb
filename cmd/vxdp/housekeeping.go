package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// quotaFlags set the per-project quotas every controller enforces
// (Neutron's names and defaults; -1 is no limit).
func quotaFlags() []cli.Flag {
	q := control.DefaultQuotas
	return []cli.Flag{
		&cli.IntFlag{Name: "quota-networks", Value: q.Networks, Usage: "networks per project (-1: no limit)"},
		&cli.IntFlag{Name: "quota-ports", Value: q.Ports, Usage: "ports per project"},
		&cli.IntFlag{Name: "quota-security-groups", Value: q.SecurityGroups, Usage: "security groups per project"},
		&cli.IntFlag{Name: "quota-security-group-rules", Value: q.SecurityGroupRules, Usage: "security group rules per project"},
	}
}

func quotasOf(c *cli.Context) (control.Quotas, error) {
	q := control.Quotas{Networks: c.Int("quota-networks"), Ports: c.Int("quota-ports"),
		SecurityGroups: c.Int("quota-security-groups"), SecurityGroupRules: c.Int("quota-security-group-rules")}
	rec := control.QuotaRecord{Quotas: q}
	if err := rec.Validate(); err != nil {
		return q, fmt.Errorf("--quota-*: %w", err)
	}
	return q, nil
}

// bucketSettings are what `vxdp server` and `vxdp server bucket` store in
// the bucket besides creating it: the quotas and the provider network
// options every controller enforces.
type bucketSettings struct {
	bucket control.BucketOptions
	quotas control.Quotas
	ml2    control.ML2Config
}

// bucketSettingsOf reads the bucket, quota and ml2 flags.
func bucketSettingsOf(c *cli.Context) (s bucketSettings, err error) {
	if s.bucket, err = bucketOptions(c); err != nil {
		return s, err
	}
	if s.quotas, err = quotasOf(c); err != nil {
		return s, err
	}
	s.ml2, err = ml2Of(c)
	return s, err
}

// store writes the quotas and provider network options unless the bucket
// holds them already.
func (s bucketSettings) store(ctx context.Context, ctl *control.Controller) error {
	if err := storeQuotas(ctx, ctl, s.quotas); err != nil {
		return fmt.Errorf("quotas: %w", err)
	}
	if err := storeML2(ctx, ctl, s.ml2); err != nil {
		return fmt.Errorf("provider network options: %w", err)
	}
	return nil
}

// storeQuotas writes q to the bucket unless it holds them already.
func storeQuotas(ctx context.Context, ctl *control.Controller, q control.Quotas) error {
	if cur, err := ctl.GetQuotas(ctx); err == nil && cur == q {
		return nil
	}
	return ctl.SetQuotas(ctx, q)
}

// ml2Flags are Neutron's ml2 type driver options for provider networks:
// `vxdp server` stores them, every controller enforces them.
func ml2Flags() []cli.Flag {
	d := control.DefaultML2Config
	vlans := make([]string, len(d.NetworkVLANRanges))
	for i, r := range d.NetworkVLANRanges {
		vlans[i] = r.String()
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "network-vlan-ranges", Value: strings.Join(vlans, ","), EnvVars: []string{"VXDP_NETWORK_VLAN_RANGES"},
			Usage: "`PHYSNET:MIN:MAX[,...]` VLANs that vlan networks may use (a PHYSNET alone: any VLAN of it, none allocated; \"\": no vlan network) ([ml2_type_vlan] network_vlan_ranges)"},
		&cli.StringFlag{Name: "flat-networks", Value: strings.Join(d.FlatNetworks, ","), EnvVars: []string{"VXDP_FLAT_NETWORKS"},
			Usage: "`PHYSNETS` flat networks may use, comma-separated; * for any, \"\" for none ([ml2_type_flat] flat_networks)"},
	}
}

func ml2Of(c *cli.Context) (control.ML2Config, error) {
	var m control.ML2Config
	var err error
	if m.NetworkVLANRanges, err = control.ParseNetworkVLANRanges(c.String("network-vlan-ranges")); err != nil {
		return m, fmt.Errorf("--network-vlan-ranges: %w", err)
	}
	if m.FlatNetworks, err = control.ParseFlatNetworks(c.String("flat-networks")); err != nil {
		return m, fmt.Errorf("--flat-networks: %w", err)
	}
	return m, nil
}

// storeML2 writes m to the bucket unless it holds it already.
func storeML2(ctx context.Context, ctl *control.Controller, m control.ML2Config) error {
	if cur, err := ctl.GetML2Config(ctx); err == nil && slices.Equal(cur.NetworkVLANRanges, m.NetworkVLANRanges) && slices.Equal(cur.FlatNetworks, m.FlatNetworks) {
		return nil
	}
	return ctl.SetML2Config(ctx, m)
}

// memberSyncFlag sets how often the server repairs security group members.
var memberSyncFlag = &cli.DurationFlag{Name: "member-sync-interval", Value: 10 * time.Minute,
	Usage: "how often to repair security group member records left by a crashed controller (they are also repaired at start)"}

// syncMembers keeps the member records of security groups in step with the
// ports (control.Controller.SyncMembers) until ctx ends: now, and every
// interval. Errors are logged and retried at the next round.
func syncMembers(ctx context.Context, nc *nats.Conn, bucket string, interval time.Duration, log *slog.Logger) {
	ctl, err := control.NewController(ctx, nc, control.ControllerOptions{Bucket: bucket, Log: log})
	if err != nil {
		log.Error("security group members: no controller", "err", err)
		return
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if _, err := ctl.SyncMembers(rctx); err != nil && ctx.Err() == nil {
			log.Warn("security group members: repair incomplete; next round", "err", err, "in", interval)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
