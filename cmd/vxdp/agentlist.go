package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// agentListCommand is `vxdp agent list`: a subcommand of the agent command.
func agentListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the agents and their liveness, like `openstack network agent list`",
		Description: `An agent is alive (:-)) while its last heartbeat is younger than --down-time
(Neutron's agent_down_time, 75s), dead (XXX) otherwise. An agent whose VTEP is
not its host's registered one is listed below the table: other hosts ignore its
claim ("vxdp host list").`,
		Flags: slices.Concat(natsFlags(), []cli.Flag{
			&cli.DurationFlag{Name: "down-time", Value: control.DefaultAgentDownTime, Usage: "heartbeat age after which an agent is dead"},
			netnsFlag}, outputFlags(agentView)),
		Action: withJetStream(func(c *cli.Context, ctx context.Context, js jetstream.JetStream) error {
			agents, err := control.ListAgents(ctx, js, c.String("bucket"), c.Duration("down-time"), cliLogger())
			if err != nil {
				return err
			}
			if err := printList(c, agentView, agents); err != nil {
				return err
			}
			return printVTEPMismatches(c, agents)
		}),
	}
}

// agentView is how agents print: the columns of `openstack network agent
// list` (the seed's table), then vxdp's own (docs/cli.md).
var agentView = view[control.AgentInfo]{
	kind: "agent",
	columns: []column[control.AgentInfo]{
		{key: "id", header: "ID", value: func(a control.AgentInfo) any { return a.ID }},
		{key: "agent_type", header: "Agent Type", value: func(a control.AgentInfo) any { return a.AgentType }},
		{key: "host", header: "Host", value: func(a control.AgentInfo) any { return a.Host }},
		{key: "availability_zone", header: "Availability Zone", value: func(a control.AgentInfo) any { return stringOrNil(a.AvailabilityZone) },
			text: func(a control.AgentInfo) string { return cmp.Or(a.AvailabilityZone, "None") }},
		{key: "alive", header: "Alive", value: func(a control.AgentInfo) any { return a.Alive },
			text: func(a control.AgentInfo) string { return map[bool]string{true: ":-)", false: "XXX"}[a.Alive] }},
		{key: "admin_state_up", header: "State", value: func(a control.AgentInfo) any { return a.AdminStateUp },
			text: func(a control.AgentInfo) string { return map[bool]string{true: "UP", false: "DOWN"}[a.AdminStateUp] }},
		{key: "binary", header: "Binary", value: func(a control.AgentInfo) any { return a.Binary }},
		{key: "vtep_ip", header: "VTEP", value: func(a control.AgentInfo) any { return a.VTEP.String() }},
		{key: "registered_vtep_ip", header: "Registered VTEP", value: func(a control.AgentInfo) any { return addrOrNil(a.RegisteredVTEP) }},
		{key: "vtep_mismatch", header: "VTEP Mismatch", value: func(a control.AgentInfo) any { return a.VTEPMismatch() }},
		{key: "version", header: "Version", value: func(a control.AgentInfo) any { return a.Version }},
		{key: "heartbeat_at", header: "Last Heartbeat", value: func(a control.AgentInfo) any { return timeOrNil(a.HeartbeatAt) }},
		{key: "applied_revision", header: "Applied Revision", value: func(a control.AgentInfo) any { return a.AppliedRevision }},
	},
	list: []string{"id", "agent_type", "host", "availability_zone", "alive", "admin_state_up", "binary"},
}

// printVTEPMismatches adds, below the default table, a line per agent whose
// VTEP is not its host's registered one (typed output has vtep_mismatch).
func printVTEPMismatches(c *cli.Context, agents []control.AgentInfo) error {
	p, err := printerOf(c)
	if err != nil || p.format != formatTable || len(p.columns) > 0 {
		return err
	}
	for _, a := range agents {
		if a.VTEPMismatch() {
			if _, err := fmt.Fprintf(p.w, "VTEP mismatch: the agent of %s reports %s, its host is registered with %s; other hosts use %s (vxdp host list)\n",
				a.Host, a.VTEP, a.RegisteredVTEP, a.RegisteredVTEP); err != nil {
				return err
			}
		}
	}
	return nil
}
