package cluster

import (
	"context"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// The loop keeps the gateway's partitions where the placement wants them.
// For each partition p, with the table computed from the live members:
//
//   - serving p: replicate to the owner and replicas of the table (a new
//     one is caught up first); once the table's owner is another gateway
//     and it is caught up, hand p to it (planned hand-off).
//   - not serving p, and this gateway is p's owner, and no live gateway
//     serves p (its server died or left): ask every live gateway what it
//     holds of p; the best holder (highest epoch, then longest log; this
//     gateway on a tie) catches this one up and hands p over, or this
//     gateway serves p from its own store when it is the best (fail-over,
//     and the start of a cluster).
//   - without a majority (Quorum "majority"): serve nothing.

const loopEvery = 100 * time.Millisecond

// startGrace is how long a gateway that just started waits for all the
// gateways it knows before it takes a partition over.
const startGrace = 10 * time.Second

// claim marks partition p busy with a change of who serves it (hand-off,
// give-up, take-over, serve); false when one is running already. Changes
// of one partition never overlap: a give-up that wipes the store must not
// run under a take-over that serves from it.
func (n *Node) claim(p int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy[p] {
		return false
	}
	n.busy[p] = true
	return true
}

func (n *Node) unclaim(p int) {
	n.mu.Lock()
	n.busy[p] = false
	n.mu.Unlock()
}

func (n *Node) wakeLoop() {
	select {
	case n.ml.changes <- struct{}{}:
	default:
	}
}

func (n *Node) loop() {
	defer n.wg.Done()
	t := time.NewTicker(loopEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-n.ml.Changes():
			n.refreshView()
		case <-t.C:
			n.refreshView()
		}
		n.st.mu.Lock()
		n.st.resend(time.Now())
		n.st.mu.Unlock()
		if on, changed := n.iso.check(); changed {
			n.log.Warn("fault injection: isolation switched", "isolated", on)
		}
		n.rejoin()
		n.parkWaiting()
		n.retryForwards()
		n.reconcile()
	}
}

// rejoinEvery is how often a gateway that misses gateways it knows tries
// to join them again.
const rejoinEvery = 2 * time.Second

// rejoin joins the gateways it knows that are not in the view (and the
// seeds) again: after a network split longer than memberlist gossips to
// the dead, neither side would contact the other by itself.
func (n *Node) rejoin() {
	if n.iso.isolated() || n.stopped.Load() {
		return
	}
	n.mu.Lock()
	missing := false
	var addrs []string
	for base := range n.known {
		if _, ok := n.bases[base]; ok || base == n.cfg.Gateway {
			continue
		}
		missing = true
		if a := n.gossipOf[base]; a != "" {
			addrs = append(addrs, a)
		}
	}
	awaiting := n.awaitingSeed.Load()
	due := (missing || awaiting) && time.Since(n.rejoinAt) > rejoinEvery
	if due {
		n.rejoinAt = time.Now()
	}
	n.mu.Unlock()
	if !due || !n.rejoining.CompareAndSwap(false, true) {
		return
	}
	self := n.ml.Addr()
	addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == self })
	if len(addrs) == 0 || awaiting {
		// Gateways known from an earlier run without an address, or a
		// gateway that has not reached the cluster yet.
		for _, a := range n.cfg.Membership.Seeds {
			if a != self {
				addrs = append(addrs, a)
			}
		}
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.rejoining.Store(false)
		// Only the addresses that answer: memberlist's own dial waits
		// its TCP timeout (10 s) for each that does not, and a stopping
		// gateway would wait for it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-n.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		var live []string
		d := net.Dialer{Timeout: time.Second}
		for _, a := range addrs {
			if c, err := d.DialContext(ctx, "tcp", a); err == nil {
				c.Close()
				live = append(live, a)
			}
		}
		if len(live) == 0 || ctx.Err() != nil {
			return
		}
		joined, err := n.ml.Rejoin(live)
		n.log.Debug("rejoin of known gateways", "addresses", live, "contacted", joined, "error", err)
	}()
}

// heartbeats tells every peer this gateway is alive, for the quorum lease.
func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Lease / 5)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.mu.Lock()
		var addrs []string
		for name, m := range n.view {
			if name != n.name && m.Meta != nil {
				addrs = append(addrs, m.Meta.RemoteAddr)
			}
		}
		n.mu.Unlock()
		ping := &pb.StreamMsg{From: n.name, Addr: n.st.addr, Session: uint64(time.Now().UnixNano())}
		for _, a := range addrs {
			n.post(actor.NewPID(a, heartbeatActor), ping)
		}
	}
}

// refreshView takes the live member list from gossip. A gateway that
// restarted is a new member: its older incarnation is gone at once.
func (n *Node) refreshView() {
	members := n.ml.Members()
	var newKnown, leftKnown, back []string
	n.mu.Lock()
	old := n.view
	n.view = map[string]Member{}
	n.bases = map[string]string{}
	for _, m := range members {
		base, inc, _ := strings.Cut(m.Name, "#")
		if cur, ok := n.bases[base]; ok {
			_, curInc, _ := strings.Cut(cur, "#")
			if incarnationLess(inc, curInc) {
				continue
			}
			delete(n.view, cur)
		}
		n.bases[base] = m.Name
		n.view[m.Name] = m
		if m.Addr != "" {
			n.gossipOf[base] = m.Addr
		}
		draining := m.Name == n.name && n.draining || m.Name != n.name && m.Meta.GetDraining()
		if !n.known[base] && !draining {
			n.known[base] = true
			newKnown = append(newKnown, base)
		}
		if n.forgotten[base] {
			delete(n.forgotten, base)
			back = append(back, base)
		}
		if _, ok := n.joinedAt[m.Name]; !ok {
			n.joinedAt[m.Name] = time.Now()
		}
	}
	// Draining gateways get no partitions; they leave the quorum count.
	for base, name := range n.bases {
		if name == n.name && n.draining || name != n.name && n.view[name].Meta.GetDraining() {
			delete(n.bases, base)
			if n.known[base] {
				delete(n.known, base)
				leftKnown = append(leftKnown, base)
			}
		}
	}
	var gone, joined []string
	for name := range old {
		if _, ok := n.view[name]; !ok {
			gone = append(gone, name)
		}
	}
	for name := range n.view {
		if _, ok := old[name]; !ok && name != n.name {
			joined = append(joined, name)
		}
	}
	// Gossip addresses to store: those of gateways newly known, and any
	// that changed.
	addrSaves := map[string]string{}
	for _, g := range newKnown {
		addrSaves[g] = n.gossipOf[g]
	}
	for base := range n.bases {
		if a := n.gossipOf[base]; n.known[base] && a != "" && a != n.savedAddr[base] {
			addrSaves[base] = a
		}
	}
	for g, a := range addrSaves {
		n.savedAddr[g] = a
	}
	reached := len(n.bases) > 1 && n.awaitingSeed.Load()
	changed := len(gone) > 0 || len(old) != len(n.view)
	if changed {
		n.viewSince = time.Now()
	}
	n.mu.Unlock()
	// The gateways known are kept across restarts: a gateway that starts
	// alone counts the majority of the whole cluster.
	for g, a := range addrSaves {
		if err := n.store.SaveGatewayAddr(g, a); err != nil {
			n.log.Error("gateway not recorded", "gateway", g, "error", err)
		}
	}
	if reached {
		n.awaitingSeed.Store(false)
		n.log.Info("reached the cluster", "members", len(members))
	}
	for _, g := range leftKnown {
		if err := n.store.DeleteGateway(g); err != nil {
			n.log.Error("drained gateway not forgotten", "gateway", g, "error", err)
		}
	}
	for _, g := range back {
		n.log.Info("a forgotten gateway is back; it counts for the majority again", "gateway", g)
		if err := n.store.ClearForgotten(g); err != nil {
			n.log.Error("forgotten gateway's mark not cleared", "gateway", g, "error", err)
		}
	}
	for _, name := range gone {
		n.memberGone(name)
	}
	for _, name := range joined {
		n.log.Info("member joined", "member", name)
		n.sendJobs(name)
		n.sendForgotten(name)
	}
	// Quorum evidence: when a majority of the gateways known was last
	// heard from. A peer was heard at the send time of its last answered
	// ping (or when it joined the view); the evidence is as old as the
	// majority-th most recent of those, this gateway itself being now. It
	// must not be taken as now: that stretched the lease to twice its
	// length, and a gateway cut off went on serving after the others had
	// taken its partitions over.
	now := time.Now()
	n.mu.Lock()
	heard := []time.Time{now}
	for base, name := range n.bases {
		if base == n.cfg.Gateway {
			continue
		}
		at := n.contact[name]
		if j := n.joinedAt[name]; j.After(at) {
			at = j
		}
		heard = append(heard, at)
	}
	known := len(n.known)
	n.mu.Unlock()
	sort.Slice(heard, func(i, j int) bool { return heard[i].After(heard[j]) })
	if n.quorumAt.Load() != 0 && n.Fenced() {
		// Latched: even if answers come in now, the partitions go (the
		// others may have taken them over meanwhile). Not before the
		// first majority: nothing was served yet.
		n.fenceLatch.Store(true)
	}
	switch need := known/2 + 1; {
	case n.awaitingSeed.Load():
		// Not in the cluster yet: no evidence of anything.
	case n.cfg.Quorum == QuorumNone:
		n.quorumAt.Store(now.UnixNano())
	case len(heard) >= need:
		if at := heard[need-1].UnixNano(); at > n.quorumAt.Load() && now.Sub(heard[need-1]) < n.cfg.Lease {
			n.quorumAt.Store(at)
		}
	}
}

func incarnationLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// memberGone closes the stream to a member that left or died: what it
// had not acknowledged no longer waits for it.
func (n *Node) memberGone(name string) {
	n.log.Info("member gone", "member", name)
	n.st.mu.Lock()
	fns := n.st.closeStream(name)
	n.st.mu.Unlock()
	n.mu.Lock()
	// What it replicated here stays: a take-over starts from it.
	for p := range n.replicas {
		delete(n.replicas[p], name)
	}
	delete(n.in, name)
	delete(n.contact, name)
	delete(n.joinedAt, name)
	n.mu.Unlock()
	runAll(fns, false)
	n.retryForwardsTo(name)
}

// Fenced reports that the gateway has not heard from a majority for
// longer than the lease, or has not yet given up the partitions it served
// when that last happened: it must not apply events or deliver rows.
func (n *Node) Fenced() bool {
	at := n.quorumAt.Load()
	return at == 0 || n.fenceLatch.Load() || time.Since(time.Unix(0, at)) > n.cfg.Lease
}

// table is the placement for the current view.
// table is the placement for the current view, computed again only when
// the placed gateways change (forwarding asks for it per batch). The
// Table is shared: callers only read it.
func (n *Node) table() (Table, map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	bases := make(map[string]string, len(n.bases))
	names := make([]string, 0, len(n.bases))
	for b, m := range n.bases {
		bases[b] = m
		names = append(names, b)
	}
	sort.Strings(names)
	if n.tblNames == nil || !slices.Equal(names, n.tblNames) {
		n.tbl, _ = Place(n.parts, n.cfg.Replicas, names)
		n.tblNames = names
	}
	return n.tbl, bases
}

func (n *Node) reconcile() {
	if n.stopped.Load() || !n.gw.Ready() {
		return
	}
	t, bases := n.table()
	latched := n.fenceLatch.Load()
	fenced := n.Fenced()
	draining := n.announceDrain.Load()
	n.mu.Lock()
	settled := time.Since(n.viewSince) > 3*loopEvery
	// A take-over also needs a majority in the view itself, whatever the
	// lease says: a gateway cut off sees the others leave its view about
	// when its lease lapses, and must not take their partitions.
	if n.cfg.Quorum != QuorumNone && len(n.bases) <= len(n.known)/2 {
		settled = false
	}
	// Just started (after a crash, or with every gateway restarting at
	// once), a gateway does not know who holds the newest copy of a
	// partition: a majority of answers may miss the one holder left (the
	// nemesis lost a partition's acknowledged input so, a gateway taking
	// it over from an older copy 0.35 s after its start, before the
	// holder was back in its view). It waits for every gateway it knows,
	// for startGrace at most.
	if time.Since(n.startedAt) < startGrace {
		for base := range n.known {
			if _, ok := n.bases[base]; !ok {
				settled = false
				break
			}
		}
	}
	n.mu.Unlock()
	for p := 0; p < n.parts; p++ {
		a := t.Partitions[p]
		if n.gw.Serving(p) {
			if fenced {
				if n.claim(p) {
					n.gw.StopIntake(p)
					go n.abandon(p)
				}
				continue
			}
			var want []string
			for _, base := range append([]string{a.Owner}, a.Replicas...) {
				if m := bases[base]; m != "" && m != n.name {
					want = append(want, m)
				}
			}
			n.keepReplicas(p, want)
			if owner := bases[a.Owner]; owner != "" && owner != n.name && n.replicaCaughtUp(p, owner) && n.claim(p) {
				go n.handOff(p, owner)
			}
			continue
		}
		// A gateway that announced its drain takes nothing over: the others
		// place without it already, so the owner in their placement takes
		// the partition over, while this one, until drainSettle has
		// passed, still places itself (seed 849 had both serve it).
		if fenced || !settled || draining || a.Owner != n.cfg.Gateway || n.servedElsewhere(p) {
			continue
		}
		n.mu.Lock()
		due := time.Since(n.takingAt[p]) > 3*time.Second
		n.mu.Unlock()
		if due && n.claim(p) {
			n.mu.Lock()
			n.takingAt[p] = time.Now()
			n.mu.Unlock()
			go n.takeOver(p)
		}
	}
	if latched {
		// Every partition served when the lease lapsed is being given up
		// (or was claimed by a change that ends it): the latch has done
		// its work once no partition is served any more.
		served := false
		for p := 0; p < n.parts; p++ {
			served = served || n.gw.Serving(p)
		}
		if !served {
			n.fenceLatch.Store(false)
		}
	}
}

// servedElsewhere reports whether a live gateway's metadata says it
// serves p.
func (n *Node) servedElsewhere(p int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, m := range n.view {
		if name != n.name && serves(m.Meta, p) {
			return true
		}
	}
	return false
}

// serverOf is the live member whose metadata says it serves p, or the
// owner of the table when none does ("" when it is this gateway).
func (n *Node) serverOf(p int) string {
	n.mu.Lock()
	for name, m := range n.view {
		if name != n.name && serves(m.Meta, p) {
			n.mu.Unlock()
			return name
		}
	}
	n.mu.Unlock()
	t, bases := n.table()
	if owner := bases[t.Partitions[p].Owner]; owner != n.name {
		return owner
	}
	return ""
}

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
	epoch := n.gw.Epoch(p)
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
	r := &replica{}
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
	finish := func() {
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
		n.st.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_Log{Log: &pb.ReplLog{Groups: parts[len(parts)-1]}}}, func(ok bool) {
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
		})
	}
	if left == 0 {
		finish()
	}
	n.st.mu.Unlock()
	return done
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

// abandon stops serving p without a hand-off: this gateway has not heard
// from a majority within the lease, so the others may have taken p over.
// What it holds of p is given up when a replica had all of it; without
// one (replicas: 1, or the replica gone) it is kept, to serve p again.
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
	n.log.Warn("no majority of the cluster heard within the lease; partition given up", "partition", p, "keep_state", keep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.gw.Abandon(ctx, p, keep); err != nil {
		n.log.Error("partition not given up cleanly", "partition", p, "error", err)
	}
	n.publishMeta()
}

// handOff gives partition p to member: when this gateway serves p it
// stops at a barrier (the partition applies what is queued and writes a
// checkpoint), waits for the partition's rows to leave the outbox so the
// checkpoint is safe, then ships it and the HandOff; a holder that does
// not serve p catches member up first.
//
// While the partition is on its way (this gateway stopped serving it, the
// receiver does not serve it yet) this gateway says it is taking it over,
// so that a gateway that places it elsewhere backs off instead of taking
// it over or asking for a second hand-off (C8).
func (n *Node) handOff(p int, member string) {
	defer n.unclaim(p)
	start := time.Now()
	n.markTaking(p, takeOverMark, member)
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
			deadline := time.Now().Add(n.cfg.HandOffWait)
			for !n.gw.Drained(hw) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n.gw.Drained(hw) {
				if err := n.gw.MakeSafe(p, sc); err != nil {
					n.log.Error("hand-off: checkpoint not stored", "partition", p, "error", err)
				}
			} else {
				n.log.Warn("hand-off: rows still in the outbox; the next owner re-emits those after the last safe checkpoint",
					"partition", p, "waited", n.cfg.HandOffWait)
			}
		}
	} else {
		n.catchUp(p, member)
	}
	epoch := n.gw.Epoch(p)
	if epoch == 0 {
		epoch, _ = n.epoch(p)
	}
	n.sendTo(member, &pb.StreamMsg{Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: uint32(p), Epoch: epoch, LastSeq: n.store.LastSeq(p)}}}, nil)
	n.markTaking(p, inTransitMark, member) // until the receiver's own mark is surely up
	n.mu.Lock()
	n.replicas[p] = nil
	n.mu.Unlock()
	n.handoffs.Add(1)
	took := time.Since(start)
	n.log.Debug("partition handed off", "partition", p, "to", member, "took", took.Round(time.Millisecond))
	n.changes.add("partitions handed off", "to", member, p, took)
}

// takeOver finds the best holder of a partition nobody serves and has it
// hand the partition here, or serves it from this gateway's own store.
//
// No two gateways may take one partition over at once: views can differ
// (a gateway that announced its drain places itself, the others do not),
// so two gateways can each be the owner in their own view, find the same
// copies and nobody serving, and both serve at the same epoch, numbering
// new log entries from the same position. Each says it is taking p over
// (holdings) before it asks, until it serves p or gives up; one that
// finds another taking p over, or misses an answer, backs off and the
// loop tries again. Of two that ask each other, at least one sees the
// other's mark, as each set its own before asking.
func (n *Node) takeOver(p int) {
	defer n.unclaim(p)
	n.markTaking(p, takeOverMark, "")
	n.mu.Lock()
	peers := n.peersLocked()
	n.reqID++
	id := n.reqID
	ch := make(chan statusAnswer, len(peers))
	n.requests[id] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.requests, id)
		n.mu.Unlock()
	}()
	asked := 0
	for _, m := range peers {
		if n.sendTo(m, &pb.StreamMsg{Body: &pb.StreamMsg_StatusRequest{StatusRequest: &pb.StatusRequest{Id: id}}}, nil) {
			asked++
		}
	}
	best, bestEpoch, bestSeq := n.name, uint64(0), n.store.LastSeq(p)
	bestEpoch, _ = n.epoch(p)
	if asked < len(peers) {
		// A member in the view without an address yet may be taking p over.
		n.backOff(p, "a gateway in the view cannot be asked", "asked", asked, "members", len(peers)+1)
		return
	}
	timeout := time.After(2 * time.Second)
	for got := 0; got < asked; got++ {
		select {
		case a := <-ch:
			for _, h := range a.reply.Partitions {
				if int(h.Partition) != p {
					continue
				}
				if h.Serving {
					n.backOff(p, "") // served after all
					return
				}
				if h.Taking {
					n.backOff(p, "another gateway is taking it over", "gateway", a.from)
					return
				}
				if h.Epoch > bestEpoch || h.Epoch == bestEpoch && h.LastSeq > bestSeq {
					best, bestEpoch, bestSeq = a.from, h.Epoch, h.LastSeq
				}
			}
		case <-timeout:
			// The silent one may be taking p over itself: deciding without
			// it could serve p twice.
			n.backOff(p, "not every gateway answered", "asked", asked, "answered", got)
			return
		case <-n.stop:
			n.backOff(p, "")
			return
		}
	}
	if best == n.name {
		why := "take-over"
		if bestEpoch == 0 {
			why = "new partition" // nobody served it before: a new cluster
		}
		n.serveClaimed(p, bestEpoch, why)
		return
	}
	// Still taking p over until the holder hands it here (serveClaimed
	// clears the mark) or the mark lapses: another owner asking meanwhile
	// backs off instead of asking the holder for a second hand-off.
	n.markTaking(p, handOffMark, "")
	n.log.Debug("asking the best holder to hand the partition over", "partition", p, "holder", best, "epoch", bestEpoch, "last_seq", bestSeq)
	n.changes.add("asking the best holder to hand partitions over", "holder", best, p, 0)
	n.sendTo(best, &pb.StreamMsg{Body: &pb.StreamMsg_HandoffRequest{HandoffRequest: &pb.HandOffRequest{Partition: uint32(p), Epoch: bestEpoch, LastSeq: bestSeq}}}, nil)
}

const (
	// takeOverMark bounds how long a take-over says it is taking its
	// partition over while it asks the holders and serves (it clears the
	// mark when it ends: this only covers a take-over that hangs).
	takeOverMark = time.Minute
	// handOffMark is how long a gateway that asked the best holder for a
	// hand-off still says it is taking the partition over: the holder
	// waits up to 10 s for a change under way (claimWait), then catches
	// this gateway up.
	handOffMark = 20 * time.Second
	// inTransitMark is how long a gateway that handed a partition off
	// still says it is taking it over: the receiver marks it once the
	// HandOff arrives (the stream resends it after a second).
	inTransitMark = 5 * time.Second
)

// takingMark says until when this gateway tells the others it is taking
// a partition over, or handing it to member (who may go on and take it).
type takingMark struct {
	until time.Time
	to    string
}

func (m takingMark) holds(now time.Time, asker string) bool {
	return now.Before(m.until) && (m.to == "" || m.to != asker)
}

// markTaking makes holdings say, for d, that this gateway is taking p
// over; with to set, that it hands p to that member (told only to the
// others).
func (n *Node) markTaking(p int, d time.Duration, to string) {
	n.mu.Lock()
	n.taking[p] = takingMark{until: time.Now().Add(d), to: to}
	n.mu.Unlock()
}

// backOff ends a take-over of p that did not serve it (and clears the
// mark of one that did); why, when set, is logged with args.
func (n *Node) backOff(p int, why string, args ...any) {
	n.mu.Lock()
	n.taking[p] = takingMark{}
	n.mu.Unlock()
	if why != "" {
		n.log.Warn("take-over backs off; the loop tries again", append([]any{"partition", p, "why", why}, args...)...)
	}
}
