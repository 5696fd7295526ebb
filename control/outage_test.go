package control_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vxdp/vxdp/control"
	"github.com/vxdp/vxdp/control/natsd"
)

// An agent started before NATS (a hypervisor booting before the control
// plane) sends nothing, and syncs once NATS is there.
func TestAgentStartsBeforeNATS(t *testing.T) {
	port, err := natsd.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	node3 := startAgentConn(t, connect(t, url, func(o *control.ConnectOptions) { o.Retry = true }), "node3", node3VTEP)
	time.Sleep(1500 * time.Millisecond)
	if d := node3.current(); d != nil {
		t.Fatalf("a state without NATS:%s", describe(d))
	}

	startServerAt(t, fmt.Sprintf("127.0.0.1:%d", port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seedPorts(t, ctx, newController(t, url))
	startAgent(t, url, "node1", node1VTEP)
	startAgent(t, url, "node4", node4VTEP)
	node3.waitL2(t,
		"net vxlan100_net vni 100 mtu 1450 flood 192.168.248.1,192.168.248.4",
		"local vxlan100_net fa:16:3e:cb:98:2c tap9784ef08-97 172.16.100.19",
		"remote vxlan100_net fa:16:3e:06:42:34 @192.168.248.4 172.16.100.12",
		"remote vxlan100_net fa:16:3e:6e:c0:44 @192.168.248.1 172.16.100.10",
	)
}
