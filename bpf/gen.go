// Package bpf holds vxdp's BPF programs (C sources beside this file, one
// program per file) and the Go bindings bpf2go generates from them. The
// generated objects are committed so `go build` needs no clang; `make
// generate` rebuilds them.
//
// The map key/value types are generated once, from the port object: every
// program includes the same bpf/include/maps.h and shares one instance of
// every map at load time.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -type vxdp_config -type agent_meta -type stat_value -type port_info -type net_info -type fdb_key -type fdb_entry -type vni_addr -type mac_value -type port_addr_key -type port_addr_value -type vxdp_reason -type vxdp_prog -type fdb_kind -type port_flag -type net_flag -type config_flag -type addr_family -type port_addr_kind -type sg_mask -type policy_remote_key -type policy_l4_key -type ct_key -type ct_entry -type sg_dir -type sg_event -type ct_state -type ct_tcp_seen -type mon_event -type dhcp_lease -type provider_key -type net_kind -type vni_addr6 Port port.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types Uplink uplink.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types UplinkBound uplink.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror -DVXDP_DEV_BOUND
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types Vxlan vxlan.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types Deliver deliver.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types Segment segment.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types Bridge bridge.c -- -I./include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -Wall -Werror
