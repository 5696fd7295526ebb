// Package deploy holds no code: this directory holds what a deployment is
// made of (systemd units, example configuration, Prometheus and Grafana
// files, deploy/provision-node.sh), and this package's tests check the
// provisioning script and the Vagrantfile that uses it against the lab
// (package lab). The units and configuration files are checked with the
// command that runs them, in cmd/vxdp.
package deploy
