package cluster

// How a partition leaves this gateway (this file): a planned hand-off, to
// the placement's new owner or to a gateway that asked the best holder for
// it, and giving a partition up when the lease lapsed (abandon).
//
// Invariants kept here: C8 (the sender stops the partition at a barrier
// and ships everything before the HandOff, and says it is taking the
// partition over until the receiver surely has it; a holder refuses a
// request for a copy it no longer holds), C6 (the hand-off checkpoint is
// made safe once its rows have left the outbox), C9 (a gateway cut off
// gives its partitions up; it keeps its copy of each, and keeps its
// undelivered rows only when no replica had all of it).

import (
	"context"
	"errors"
	"time"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// handOff gives partition p to member: when this gateway serves p it
// stops at a barrier (the partition applies what is queued and writes a
// checkpoint), waits for the partition's rows to leave the outbox so the
// checkpoint is safe, then ships it and the HandOff; a holder that does
// not serve p catches member up first.
//
// While the partition is on its way (this gateway stopped serving it, the
// receiver does not serve it yet) this gateway says it is taking it over,
// so that a gateway that places it elsewhere backs off instead of taking
// it over or asking for a second hand-off (C8). Until the HandOff is sent
// it says so to the receiver too: intake stops before the entries in the
// last group commit are logged and replicated, so the copy the receiver
// compares with this one's answer may still grow. A receiver that took p
// over from its own copy meanwhile would serve without the entries that
// follow (acknowledged by the others' quorum), and ignore them as
// replication for a partition it serves (TestClusterParkedInputSurvivesKill9
// lost a reading that way).
func (n *Node) handOff(p int, member string) {
	defer n.unclaim(p)
	start := time.Now()
	n.markTaking(p, takeOverMark, "")
	if n.gw.Serving(p) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sc, hw, err := n.gw.Release(ctx, p)
		cancel()
		if err != nil {
			n.backOff(p, "")
			n.log.Error("hand-off: partition did not stop", "partition", p, "error", err)
			return
		}
		n.publishMeta()
		if sc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.HandOffWait)
			err := n.gw.MakeSafe(ctx, p, sc, hw)
			cancel()
			switch {
			case errors.Is(err, actors.ErrNotDrained):
				n.log.Warn("hand-off: rows still in the outbox; the next owner re-emits those after the last safe checkpoint",
					"partition", p, "waited", n.cfg.HandOffWait)
			case err != nil:
				n.log.Error("hand-off: checkpoint not stored", "partition", p, "error", err)
			}
		}
		if !n.replicaHas(p, member, n.store.LastSeq(p)) {
			// Not a replica known to hold all of p (one that refused this
			// server's replication, or dropped and added again): it gets
			// the copy first, or it would serve from its own, positions
			// after its last numbered again with other entries.
			n.catchUp(p, member)
		}
	} else {
		n.catchUp(p, member)
	}
	if testHookHandOffReady != nil {
		testHookHandOffReady(n, p)
	}
	epoch := n.copyEpoch(p)
	n.sendTo(member, &pb.StreamMsg{Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: uint32(p), Epoch: epoch, LastSeq: n.store.LastSeq(p)}}}, nil)
	n.markTaking(p, inTransitMark, member) // until the receiver's own mark is surely up
	n.mu.Lock()
	n.replicas[p] = nil
	n.mu.Unlock()
	n.handoffs.Add(1)
	took := time.Since(start)
	n.log.Debug("partition handed off", "partition", p, "to", member, "epoch", epoch, "last_seq", n.store.LastSeq(p), "took", took.Round(time.Millisecond))
	n.changes.add("partitions handed off", "to", member, p, took)
}

// replicaHas reports whether member is a caught-up replica of p that
// acknowledged its log through last.
func (n *Node) replicaHas(p int, member string, last uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.replicas[p][member]
	return r != nil && r.caughtUp && r.acked >= last
}

// testHookHandOffReady, set by tests only, runs when a hand-off has
// stopped its partition and is about to send the HandOff.
var testHookHandOffReady func(n *Node, p int)

// handOffRequested hands a partition to the member that asked for it,
// unless this gateway no longer holds the copy it was asked for, or gave
// the partition to another gateway since the member asked.
func (n *Node) handOffRequested(member string, req *pb.HandOffRequest) {
	p := int(req.Partition)
	if !n.claimWait(p) {
		return
	}
	if !n.gw.Serving(p) && (n.handedElsewhere(p, member) || n.handedTo(p, member) || !n.stillHolds(p, req)) {
		n.unclaim(p)
		return
	}
	n.handOff(p, member)
}

// handedElsewhere reports whether p went to a gateway other than member
// since member asked for it (p claimed): this gateway handed it to one
// whose HandOff may still be on its way (the in-transit mark), or another
// gateway says it serves p. A request waits for the claim up to 10 s
// (claimWait), and its sender may have been paused meanwhile: granting it
// too would make two servers. (The churn nemesis' seed 101: a gateway
// paused right after asking woke and served partition 13 from this copy
// while the gateway it had been handed to in between served it as well,
// and ignored that one's entries as replication for a partition it
// served.)
func (n *Node) handedElsewhere(p int, member string) bool {
	n.mu.Lock()
	mark := n.taking[p]
	server := ""
	for name, m := range n.view {
		if name != n.name && name != member && serves(m.Meta, p) {
			server = name
		}
	}
	n.mu.Unlock()
	to := server
	if mark.to != "" && mark.to != member && time.Now().Before(mark.until) {
		to = mark.to
	}
	if to == "" {
		return false
	}
	n.log.Warn("hand-off request for a partition handed to another gateway since; refused", "partition", p, "asker", member, "gateway", to)
	return true
}

// handedTo reports whether this gateway handed p to member moments ago
// (its HandOff may still be on its way): a request member made before it
// arrived is not answered with a second hand-off, whose catch-up would
// reach member while it serves from the first.
func (n *Node) handedTo(p int, member string) bool {
	n.mu.Lock()
	mark := n.taking[p]
	n.mu.Unlock()
	if mark.to != member || !time.Now().Before(mark.until) {
		return false
	}
	n.log.Debug("hand-off request from the gateway this one just handed the partition to; not answered again", "partition", p, "asker", member)
	return true
}

// stillHolds reports whether this gateway still holds the copy of p that
// a hand-off request was made for (p claimed). Between its answer and the
// request it may have given p up and dropped its copy (Abandon): a
// catch-up from what is left would reset the requester's copy, and the
// requester would serve p from nothing, numbering its log from 1 again
// (partition 0 then drops every event it forwards as applied already).
func (n *Node) stillHolds(p int, req *pb.HandOffRequest) bool {
	epoch, err := n.epoch(p)
	if err != nil {
		n.log.Error("hand-off request: epoch unreadable; refused", "partition", p, "error", err)
		return false
	}
	last := n.store.LastSeq(p)
	if epoch < req.Epoch || last < req.LastSeq {
		n.log.Warn("hand-off request for a copy this gateway no longer holds; refused", "partition", p,
			"asked_epoch", req.Epoch, "asked_last_seq", req.LastSeq, "epoch", epoch, "last_seq", last)
		return false
	}
	return true
}

// abandon stops serving p without a hand-off: this gateway has not heard
// from a majority within the lease, so the others may have taken p over.
// Its undelivered rows of p are given up when a replica had all of p
// (the next server re-emits them); without one (replicas: 1, or the
// replica gone) they are kept, to serve p again. Its copy of p (log and
// checkpoints) is kept either way (actors.Gateway.Abandon says why).
func (n *Node) abandon(p int) {
	defer n.unclaim(p)
	n.mu.Lock()
	keep := true
	for _, r := range n.replicas[p] {
		if r.caughtUp {
			keep = false
		}
	}
	n.replicas[p] = nil
	n.mu.Unlock()
	n.log.Warn("no majority of the cluster heard within the lease; partition given up", "partition", p, "keep_rows", keep,
		"last_seq", n.store.LastSeq(p))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.gw.Abandon(ctx, p, keep); err != nil {
		n.log.Error("partition not given up cleanly", "partition", p, "error", err)
	}
	n.publishMeta()
}
