package cluster

// Replication (this file), both sides: a partition served here is
// replicated to the owner and replicas of the placement. A new replica is
// caught up first (reset, the safe checkpoint, the log after it, then the
// stream); then every group commit (Replicate) and every safe checkpoint
// (SafeCheckpoint) goes to each replica. On the replica, acceptReplication
// and applyLog take them.
//
// Invariants kept here: C5 (Replicate answers once every replica has the
// group; a catch-up holds st.mu, so no group commit falls between its log
// and the stream), C6 (only safe checkpoints are shipped; the owner keeps
// its log after the last one, so a catch-up can send it), C3 (a replica
// takes nothing from an older epoch, nor for a partition it serves), C9 (a
// gateway cut off replicates nothing, and a replica lost counts as done
// only once a majority was heard after).

import (
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

func (n *Node) replicaCaughtUp(p int, member string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.replicas[p][member]
	return r != nil && r.caughtUp
}

// keepReplicas makes want the replicas of a partition served here:
// newcomers are caught up, others dropped.
func (n *Node) keepReplicas(p int, want []string) {
	n.mu.Lock()
	if n.replicas[p] == nil {
		n.replicas[p] = map[string]*replica{}
	}
	var add []string
	for _, m := range want {
		if n.replicas[p][m] == nil {
			add = append(add, m)
		}
	}
	for m := range n.replicas[p] {
		if !slices.Contains(want, m) {
			delete(n.replicas[p], m)
		}
	}
	n.mu.Unlock()
	for _, m := range add {
		n.catchUp(p, m)
	}
}

// copyEpoch is the epoch of this gateway's copy of p: the one it serves
// p at, or, when it does not serve p, the newest it holds (the gateway's
// own epoch stays at the last one it served p at, older than what it
// replicated since: a catch-up or hand-off that carried it made the
// receiver serve p at an epoch already used, and the replicas that knew
// the newer one ignored its replication as stale).
func (n *Node) copyEpoch(p int) uint64 {
	e, _ := n.epoch(p)
	return max(e, n.gw.Epoch(p))
}

// catchUp makes member a replica of partition p: it drops what it held,
// gets the safe checkpoint and the log after it, then the stream. Under
// st.mu, so no group commit's replication falls between (C5).
func (n *Node) catchUp(p int, member string) {
	addr := n.addrOf(member)
	if addr == "" {
		return
	}
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	o := n.st.open(member, addr)
	epoch := n.copyEpoch(p)
	n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_Reset_{Reset_: &pb.ReplReset{Partition: uint32(p), Epoch: epoch}}}, nil)
	sc, err := n.store.LoadSafeCheckpoint(p)
	if err != nil {
		n.log.Error("catch-up: safe checkpoint unreadable", "partition", p, "error", err)
		return
	}
	var after uint64
	if sc != nil {
		msg := &pb.ReplCheckpoint{Partition: uint32(p), Safe: sc, Epoch: epoch}
		if !n.checkSizeOut("safe checkpoint for a catch-up", msg) {
			return // not caught up: the partition stays where it is
		}
		n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_Checkpoint{Checkpoint: msg}}, nil)
		after = sc.Through
	}
	var group *pb.ReplGroup
	size, entries := 0, 0
	flush := func() {
		if group != nil && len(group.Entries) > 0 {
			n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_Log{Log: &pb.ReplLog{Groups: []*pb.ReplGroup{group}}}}, nil)
		}
		group, size = nil, 0
	}
	err = n.store.ReadLog(p, after, func(seq uint64, e *pb.LogEntry) error {
		if group != nil && group.FirstSeq+uint64(len(group.Entries)) != seq {
			flush()
		}
		if group == nil {
			group = &pb.ReplGroup{Partition: uint32(p), Epoch: epoch, FirstSeq: seq}
		}
		group.Entries = append(group.Entries, e)
		size += len(e.Payload) + 64
		entries++
		if size > 1<<20 {
			flush()
		}
		return nil
	})
	flush()
	if err != nil {
		n.log.Error("catch-up: log unreadable", "partition", p, "error", err)
		return
	}
	n.mu.Lock()
	r := &replica{since: time.Now()}
	if n.replicas[p] == nil {
		n.replicas[p] = map[string]*replica{}
	}
	n.replicas[p][member] = r
	n.mu.Unlock()
	n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_CaughtUp{CaughtUp: &pb.CaughtUp{Partition: uint32(p)}}}, func(ok bool) {
		if !ok {
			return
		}
		n.mu.Lock()
		r.caughtUp = true
		n.mu.Unlock()
		n.log.Debug("replica caught up", "partition", p, "replica", member)
		n.wakeLoop()
	})
	n.log.Debug("catching up a replica", "partition", p, "replica", member, "log_entries", entries)
}

// errReplicaRefused fails a group commit a replica did not store.
var errReplicaRefused = errors.New("cluster: a replica did not store the group commit (it knows a newer epoch of the partition, so another gateway serves it now; or its copy is not this server's, and it is caught up again; or it could not write it); events refused")

// Replicate ships a group commit to the replicas of its partitions
// (actors.ClusterLink): the channel yields nil once every replica has it
// (a replica that leaves the view meanwhile no longer counts).
func (n *Node) Replicate(groups []state.LogGroup) <-chan error {
	done := make(chan error, 1)
	if n.Fenced() {
		done <- actors.ErrFenced
		return done
	}
	n.st.mu.Lock()
	per := map[string][]*pb.ReplGroup{}
	lastSeq := map[string]map[int]uint64{}
	n.mu.Lock()
	for _, g := range groups {
		for m := range n.replicas[g.Partition] {
			per[m] = append(per[m], &pb.ReplGroup{Partition: uint32(g.Partition), Epoch: n.gw.Epoch(g.Partition), FirstSeq: g.First, Entries: g.Entries})
			if lastSeq[m] == nil {
				lastSeq[m] = map[int]uint64{}
			}
			lastSeq[m][g.Partition] = g.First + uint64(len(g.Entries)) - 1
		}
	}
	addrs := map[string]string{}
	for m := range per {
		if v, ok := n.view[m]; ok && v.Meta != nil {
			addrs[m] = v.Meta.RemoteAddr
		}
	}
	n.mu.Unlock()
	if len(per) == 0 {
		n.st.mu.Unlock()
		done <- nil
		return done
	}
	// A replica that leaves the view before it acknowledged no longer
	// counts, but only once a majority was heard after it left: a gateway
	// cut off sees its replicas leave too, and must not apply (and
	// acknowledge) what only it holds while the others take over.
	var lostAt atomic.Int64
	var refused atomic.Bool
	finish := func() {
		if refused.Load() {
			// A replica did not store it: most often it knows a newer
			// epoch, so another gateway serves (one of) these partitions
			// now, and what this one logged must not be acknowledged (a
			// paused gateway, back, still serving in its own eyes,
			// acknowledged forwards nobody would apply).
			done <- errReplicaRefused
			return
		}
		if t := lostAt.Load(); t != 0 {
			go n.confirmQuorumAfter(t, done)
			return
		}
		done <- nil
	}
	left := len(per)
	for m, gs := range per {
		addr := addrs[m]
		if addr == "" {
			lostAt.Store(time.Now().UnixNano())
			left--
			continue
		}
		seqs := lastSeq[m]
		member := m
		o := n.st.open(m, addr)
		// Split to the link's message size; the stream applies them in
		// order, so the last one's ack stands for all.
		parts := splitGroups(gs, msgTargetBytes)
		for _, part := range parts[:len(parts)-1] {
			n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_Log{Log: &pb.ReplLog{Groups: part}}}, nil)
		}
		n.st.sendReplication(o, &pb.StreamMsg{Body: &pb.StreamMsg_Log{Log: &pb.ReplLog{Groups: parts[len(parts)-1]}}}, func(ok bool) {
			if !ok {
				lostAt.Store(time.Now().UnixNano())
			}
			n.mu.Lock()
			for p, s := range seqs {
				if r := n.replicas[p][member]; r != nil && ok {
					r.acked = max(r.acked, s)
				}
			}
			left--
			last := left == 0
			n.mu.Unlock()
			if last {
				finish()
			}
		}, func() {
			refused.Store(true)
			parts := make([]int, 0, len(seqs))
			n.mu.Lock()
			for p := range seqs {
				parts = append(parts, p)
				if r := n.replicas[p][member]; r != nil {
					// It does not hold this server's copy: not counted as
					// having all of p (hand-off, give-up) until caught up.
					r.caughtUp = false
				}
			}
			n.mu.Unlock()
			n.goSafe("catch-up after a refused replication", func() { n.catchUpRefused(member, parts) })
		})
	}
	if left == 0 {
		finish()
	}
	n.st.mu.Unlock()
	return done
}

// recatchUpAfter: a replica that refused replication is caught up again
// at most this often (one that knows a newer epoch refuses every commit
// of a gateway that has not noticed yet).
const recatchUpAfter = time.Second

// catchUpRefused catches member up again on the partitions of a commit it
// refused and that this gateway still serves with member as a replica:
// its copy was not this server's (no reset from it, or a hole), and the
// catch-up replaces it. A replica that refused because it knows a newer
// epoch ignores the catch-up.
func (n *Node) catchUpRefused(member string, parts []int) {
	for _, p := range parts {
		if !n.gw.Serving(p) {
			continue
		}
		n.mu.Lock()
		r := n.replicas[p][member]
		due := r != nil && time.Since(r.since) >= recatchUpAfter
		n.mu.Unlock()
		if due {
			n.catchUp(p, member)
		}
	}
}

// splitGroups splits replication groups into messages of about target
// bytes each (a larger entry goes alone); a group split in two continues
// at the next sequence number.
func splitGroups(gs []*pb.ReplGroup, target int) [][]*pb.ReplGroup {
	var out [][]*pb.ReplGroup
	var cur []*pb.ReplGroup
	size := 0
	for _, g := range gs {
		start := 0
		for i, e := range g.Entries {
			s := entryBytes(e)
			if size > 0 && size+s > target {
				if i > start {
					cur = append(cur, &pb.ReplGroup{Partition: g.Partition, Epoch: g.Epoch, FirstSeq: g.FirstSeq + uint64(start), Entries: g.Entries[start:i]})
				}
				out = append(out, cur)
				cur, size, start = nil, 0, i
			}
			size += s
		}
		if start < len(g.Entries) {
			cur = append(cur, &pb.ReplGroup{Partition: g.Partition, Epoch: g.Epoch, FirstSeq: g.FirstSeq + uint64(start), Entries: g.Entries[start:]})
		}
	}
	if len(cur) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	return out
}

// confirmQuorumAfter answers a replication that lost a replica: nil once
// a majority was heard after t, ErrFenced once the lease lapsed first.
func (n *Node) confirmQuorumAfter(t int64, done chan<- error) {
	for {
		switch {
		case n.quorumAt.Load() > t:
			done <- nil
			return
		case n.Fenced() || n.stopped.Load():
			done <- actors.ErrFenced
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SafeCheckpoint ships a safe checkpoint to the partition's replicas.
func (n *Node) SafeCheckpoint(p int, sc *pb.SafeCheckpoint) {
	n.mu.Lock()
	var ms []string
	for m := range n.replicas[p] {
		ms = append(ms, m)
	}
	n.mu.Unlock()
	epoch := n.gw.Epoch(p)
	msg := &pb.ReplCheckpoint{Partition: uint32(p), Safe: sc, Epoch: epoch}
	if len(ms) == 0 || !n.checkSizeOut("safe checkpoint", msg) {
		// The replicas keep the previous one and the log since (the
		// owner truncates its own log only).
		return
	}
	for _, m := range ms {
		n.sendTo(m, &pb.StreamMsg{Body: &pb.StreamMsg_Checkpoint{Checkpoint: msg}}, nil)
	}
}

// acceptReplication reports whether a replica takes replication of p from
// member at epoch: not while it serves p itself, not from an older epoch,
// and only from the gateway whose catch-up (reset) its copy is: a copy
// that took another server's log onto what it held before (its own
// uncommitted entries when it served p, or a run of an older server)
// would mix two logs at one epoch, and a take-over that chose it would
// apply entries nobody committed, numbered where committed ones are (the
// churn nemesis lost and doubled readings so). A refusal makes the
// server catch this copy up (Replicate).
func (n *Node) acceptReplication(from string, p int, epoch uint64) bool {
	if n.gw.Serving(p) {
		n.log.Warn("replication for a partition this gateway serves; ignored", "partition", p, "from", from)
		return false
	}
	n.mu.Lock()
	holder, pr := n.holding[p], n.promised[p]
	n.mu.Unlock()
	if holder != from {
		// Debug: every commit until the catch-up arrives says it again.
		n.log.Debug("replication from a gateway this copy was not caught up by; refused (it catches this copy up)",
			"partition", p, "from", from, "caught_up_by", holder)
		return false
	}
	cur, err := n.epoch(p)
	if err != nil {
		n.log.Error("epoch unreadable", "partition", p, "error", err)
		return false
	}
	if epoch < cur {
		n.log.Warn("replication from a stale epoch; ignored", "partition", p, "from", from, "epoch", epoch, "current", cur)
		return false
	}
	if pr.refuses(n.name, epoch, from) {
		// The sender served p before a take-over this gateway promised
		// a newer epoch to (C16): what it commits now nobody serves.
		n.log.Warn("replication from before a promised take-over; refused", "partition", p, "from", from, "epoch", epoch,
			"promised", pr.epoch)
		return false
	}
	if epoch > cur {
		if err := n.setEpoch(p, epoch); err != nil {
			n.log.Error("epoch not stored", "partition", p, "error", err)
			return false
		}
	}
	return true
}

// applyLog stores a replicated run of p's log; false when it did not.
func (n *Node) applyLog(from string, g *pb.ReplGroup) bool {
	p := int(g.Partition)
	if !n.acceptReplication(from, p, g.Epoch) {
		return false
	}
	if err := n.store.AppendAt(p, g.FirstSeq, 0, g.Entries); err != nil {
		if errors.Is(err, state.ErrLogGap) {
			// Replication the stream lost while the server had dropped
			// this member (it left and came back between two rounds of
			// the server's loop): refused, the server catches it up.
			n.log.Warn("replicated log does not follow this copy; refused (the server catches it up)", "partition", p, "from", from, "error", err)
		} else {
			n.log.Error("replicated log not stored", "partition", p, "from", from, "error", err)
		}
		return false
	}
	return true
}
