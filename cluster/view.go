package cluster

// The view and the quorum (this file): the live members from gossip, one
// per gateway (a restarted gateway's older incarnation leaves the view at
// once), the gateways known, the heartbeats and the lease that make the
// quorum evidence, rejoining gateways known but missing, and the
// placement table of the view.
//
// Invariants kept here: C1 (the table is computed from the gateway names
// of the view only), C9 (Fenced: no majority heard within the lease, or
// the latch still set), C10 (a member that left has its stream closed:
// what it had not acknowledged no longer waits for it), C11 (a gateway
// that has not reached the cluster counts as cut off), C13 (the majority
// counts the gateways known, less the drained and the forgotten).

import (
	"context"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// refreshView takes the live member list from gossip.
func (n *Node) refreshView() { n.setView(n.ml.Members()) }

// setView makes members (this gateway included) the view. A gateway that
// restarted is a new member: its older incarnation is gone at once.
func (n *Node) setView(members []Member) {
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

// Fenced reports that the gateway has not heard from a majority for
// longer than the lease, or has not yet given up the partitions it served
// when that last happened: it must not apply events or deliver rows.
func (n *Node) Fenced() bool {
	at := n.quorumAt.Load()
	return at == 0 || n.fenceLatch.Load() || time.Since(time.Unix(0, at)) > n.cfg.Lease
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
