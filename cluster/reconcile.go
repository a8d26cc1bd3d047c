package cluster

// The loop (this file): every loopEvery, or when gossip changes the view,
// it refreshes the view (view.go), resends what the streams have not had
// acknowledged, parks or retries forwarded input, and reconciles each
// partition with the placement of the view: what this gateway serves it
// replicates (replicate.go) and hands to a new owner (handoff.go); what it
// owns and nobody serves it takes over (takeover.go). claim keeps the
// changes of one partition from overlapping.
//
// Invariants kept here: C1 and C2 (the placement is computed from the view
// alone, view.go), C8 (only the owner of a partition nobody serves starts
// a take-over, with a settled view that holds a majority, and not while it
// drains), C9 (a gateway without a majority within the lease gives up
// every partition it serves and takes none over).

import (
	"time"
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

// claimWait claims p, waiting up to 10 s for a change under way.
func (n *Node) claimWait(p int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n.claim(p) {
			return true
		}
	}
	n.log.Warn("partition busy with another change for 10 s; request dropped", "partition", p)
	return false
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
		n.step(time.Now())
	}
}

// step is one round of the loop once the view is fresh: resends of what
// was sent before now-resendAfter and not acknowledged, fault injection,
// rejoin, parked and forwarded input, then the partitions.
func (n *Node) step(now time.Time) {
	n.st.mu.Lock()
	n.st.resend(now)
	n.st.mu.Unlock()
	if on, changed := n.iso.check(); changed {
		n.log.Warn("fault injection: isolation switched", "isolated", on)
	}
	n.rejoin()
	n.parkWaiting()
	n.retryForwards()
	n.reconcile()
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
			failed := !fenced && n.gw.CommitFailed(p)
			if fenced || failed {
				if n.claim(p) {
					n.gw.StopIntake(p)
					if failed {
						n.log.Warn("a group commit of the partition failed; partition given up, to be taken over from the best copy", "partition", p)
					}
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
