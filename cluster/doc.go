// Package cluster will hold membership (hashicorp/memberlist), partition
// placement and hand-off, and replication of logs and checkpoints between
// gateways (DESIGN.md section 5). It is empty until the cluster lands.
package cluster
