// Package cluster owns gateway membership and partition placement
// (DESIGN.md section 5): gateways find each other through
// hashicorp/memberlist gossip, each gossiping a small NodeMeta proto, and
// every gateway computes the same placement table from the same member
// list by rendezvous hashing, so no coordinator is needed.
//
// Invariants:
//
//	C1: Place is a pure function of (partitions, replicas, member names):
//	    gateways with the same view compute the same table.
//	C2: a partition's owner and replicas are distinct members; with fewer
//	    members than replicas, every member holds the partition.
//	C3: adding or removing a member moves only the partitions whose
//	    ranking it enters or leaves (about 1/n of them), and Next bumps
//	    the epoch of exactly the partitions whose owner or replica set
//	    changed.
//
// Not here yet: forwarding input to owners, replication of logs and
// checkpoints, hand-off and fail-over (issue 5 continues).
package cluster
