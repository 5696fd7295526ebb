package main

import (
	"context"
	"fmt"
	"io"
	"time"

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
		Flags: append(natsFlags(),
			&cli.DurationFlag{Name: "down-time", Value: control.DefaultAgentDownTime, Usage: "heartbeat age after which an agent is dead"},
			jsonFlag, netnsFlag),
		Action: withJetStream(func(c *cli.Context, ctx context.Context, js jetstream.JetStream) error {
			agents, err := control.ListAgents(ctx, js, c.String("bucket"), c.Duration("down-time"), cliLogger())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, agentRowsJSON(agents))
			}
			return writeAgentTable(c.App.Writer, agents)
		}),
	}
}

// agentRow is one row of `openstack network agent list -f json`, plus
// vxdp's own columns.
type agentRow struct {
	ID               string    `json:"ID"`
	AgentType        string    `json:"Agent Type"`
	Host             string    `json:"Host"`
	AvailabilityZone *string   `json:"Availability Zone"`
	Alive            bool      `json:"Alive"`
	State            bool      `json:"State"`
	Binary           string    `json:"Binary"`
	VTEP             string    `json:"VTEP"`
	RegisteredVTEP   string    `json:"Registered VTEP"`
	VTEPMismatch     bool      `json:"VTEP Mismatch"`
	Version          string    `json:"Version"`
	Heartbeat        time.Time `json:"Last Heartbeat"`
	AppliedRevision  uint64    `json:"Applied Revision"`
}

func agentRowsJSON(agents []control.AgentInfo) []agentRow {
	out := make([]agentRow, len(agents))
	for i, a := range agents {
		var az *string
		if a.AvailabilityZone != "" {
			az = &a.AvailabilityZone
		}
		reg := ""
		if a.RegisteredVTEP.IsValid() {
			reg = a.RegisteredVTEP.String()
		}
		out[i] = agentRow{ID: a.ID, AgentType: a.AgentType, Host: a.Host, AvailabilityZone: az, Alive: a.Alive,
			State: a.AdminStateUp, Binary: a.Binary, VTEP: a.VTEP.String(), RegisteredVTEP: reg, VTEPMismatch: a.VTEPMismatch(),
			Version: a.Version, Heartbeat: a.HeartbeatAt, AppliedRevision: a.AppliedRevision}
	}
	return out
}

// writeAgentTable prints the seed's table:
//
//	| ID | Agent Type | Host | Availability Zone | Alive | State | Binary |
//
// and a line per agent whose VTEP is not its host's registered one.
func writeAgentTable(w io.Writer, agents []control.AgentInfo) error {
	rows := make([][]string, len(agents))
	for i, a := range agents {
		az := a.AvailabilityZone
		if az == "" {
			az = "None"
		}
		alive := "XXX"
		if a.Alive {
			alive = ":-)"
		}
		st := "DOWN"
		if a.AdminStateUp {
			st = "UP"
		}
		rows[i] = []string{a.ID, a.AgentType, a.Host, az, alive, st, a.Binary}
	}
	if err := writeTable(w, []string{"ID", "Agent Type", "Host", "Availability Zone", "Alive", "State", "Binary"}, rows); err != nil {
		return err
	}
	for _, a := range agents {
		if a.VTEPMismatch() {
			if _, err := fmt.Fprintf(w, "VTEP mismatch: the agent of %s reports %s, its host is registered with %s; other hosts use %s (vxdp host list)\n",
				a.Host, a.VTEP, a.RegisteredVTEP, a.RegisteredVTEP); err != nil {
				return err
			}
		}
	}
	return nil
}
