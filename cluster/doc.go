// Package cluster owns what makes gateways one active-active cluster
// (DESIGN.md section 5): membership over hashicorp/memberlist gossip
// (each gateway gossips a small NodeMeta proto: its addresses and the
// partitions it serves), placement by rendezvous hashing, per-peer streams
// over protoactor remote, forwarding of input to the gateway serving its
// partition, replication of logs and safe checkpoints, planned hand-off,
// take-over after a crash, the split-brain policy, and jobs deployed on
// every gateway. Node drives the gateway through the Gateway interface
// (gateway.go), and the gateway calls the Node as its actors.ClusterLink.
// Files by concern: the loop (reconcile.go), view and quorum (view.go),
// replication (replicate.go), hand-off (handoff.go), take-over
// (takeover.go), cluster-wide outputs (relay.go); each says at its top
// which invariants it keeps.
//
// Invariants (C4-C7, kept with the gateway, are in actors/cluster.go):
//
//	C1: Place is a pure function of (partitions, replicas, gateway names):
//	    gateways with the same view compute the same table.
//	C2: a partition's owner and replicas are distinct members; with fewer
//	    members than replicas, every member holds the partition.
//	C3: adding or removing a member moves only the partitions whose
//	    ranking it enters or leaves (about 1/n of them). A gateway serves a
//	    partition with an epoch one above any it has seen for it; replicas
//	    take nothing from an older epoch.
//	C8: a gateway serves a partition only after its previous server
//	    handed it over (stopped at a barrier, shipped everything), or after
//	    that server left the view and this gateway is the partition's owner
//	    and the best holder of it (highest epoch, then longest log) among
//	    the live gateways, or was handed it by that holder. Views can
//	    differ, so two gateways can each be owner in their own: no two
//	    take one partition over at once. A take-over tells every gateway
//	    that asks, from before it asks the holders until it serves (and a
//	    hand-off, until the receiver has it); one that finds another
//	    taking the partition over, or misses an answer, backs off. A
//	    gateway that announced its drain takes nothing over. A holder
//	    asked for a hand-off refuses when it no longer holds the copy it
//	    was chosen for (it gave the partition up since).
//	C9: with quorum "majority", a gateway that has not heard from a
//	    majority of the gateways it has known within the lease applies
//	    nothing, delivers nothing and gives its partitions up; the lease is
//	    shorter than the failure detection of the others.
//	C10: a stream applies messages in the order sent, each once, or not at
//	    all once its receiver left (a restarted gateway is a new member).
//	C11: with minority_input "log", input a gateway takes while C9 holds
//	    it off is parked in its store before it is acknowledged, keeps
//	    its forwarding identity (C7), and is forwarded in order once the
//	    gateway hears from a majority again, also after a restart. A
//	    gateway that starts counts as cut off until it has heard from a
//	    majority of the gateways it knew.
//	C12: each gateway stores the newest deploy or removal of every job
//	    name it has seen (through its admin API or from another gateway),
//	    sends them all to a gateway that joins, and applies the newest
//	    of a name over what its configuration file deployed at start
//	    (the stored updates are the one job catalog, state/jobs.go): a job removed or changed while a gateway was down is
//	    removed or changed there when it comes back, even after every
//	    gateway restarted.
//	C13: the majority counts the gateways this one has known, less those
//	    drained and those an operator forgot (Forget: gone for good). A
//	    forget reaches every gateway, also one down at the time (stored
//	    marks, sent on join); a live gateway cannot be forgotten, and a
//	    forgotten one that shows up again counts again.
//	C14: nothing from another gateway is used before every field of it
//	    is checked (validate.go): a bad message is refused, counted and
//	    changes nothing. With TLS (NodeConfig.TLS), a message is taken
//	    only from a peer with a gateway certificate of the cluster CA,
//	    and only if its claimed sender is a live member of the gateway
//	    that certificate names (link.go); a job update only if its origin
//	    is that gateway, or one not live that it relays (C12), and its
//	    version is at most maxJobVersionStep above every version this
//	    gateway knows (versions are counters; forward.go).
//	C15: MQTT output rows relayed to the other gateways (relay.go) wait
//	    for one peer within NodeConfig.RelayQueueBytes, and past it are
//	    dropped and counted: an output's delivery never waits for a peer.
//	    A receiver publishes a relayed row only for an MQTT output of a
//	    job deployed there, on a topic its template gives (actors R2),
//	    and relays it no further.
//	C16: before a take-over serves a partition at epoch e, every gateway
//	    it asked about the partition has promised to take nothing of it
//	    from an epoch below e (replication, safe checkpoints, catch-ups,
//	    hand-offs; only the holder the take-over itself asked sends its
//	    copy at the older epoch) and no other take-over at e: a gateway
//	    paused while it served the partition, back and still serving in
//	    its own eyes, has its replication refused by every replica the
//	    take-over reached, so it acknowledges nothing the new server does
//	    not hold. A gateway that serves the partition, holds a copy at e
//	    or newer, or promised e or more to another take-over refuses the
//	    promise, and the take-over backs off; e is above every promise
//	    the answers report. Promises are stored ('P' keys, synced) before
//	    they are given and read back at start: they hold across a
//	    restart.
//
// Every gateway must use the same number of partitions: one with another
// number is refused as a member (Config.Admit), so its Join fails.
//
// Known limits: parked input is on one disk until forwarded; of two
// changes of one job name made at once on two sides of a split, the one
// of the greater gateway name wins, whatever their times. A member with a valid
// certificate is trusted with the protocol itself: it can hand a
// partition to a gateway or deploy a job, as it can through its own
// admin API.
package cluster
