package actors

import (
	"errors"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Forwards to partition 0 that a failed group commit lost.
//
// Where this gateway serves partition 0, a partition forwards the events of
// the jobs that run there only through the next group commit (a local
// forward; flushForward). If that commit fails (not replicated, fenced, a
// write error), partition 0 does not apply them and nobody sends them
// again: the source's own events were committed earlier, so their
// publishers were acknowledged. Later forwards, in commits already under
// way, would be applied, and partition 0, which applies a source's
// forwards once by position (D3), would drop the lost ones if they came
// after. (The churn nemesis' seed 101 lost two readings from the jobs on
// partition 0 around a pause, which fails commits.)
//
// So a failed local forward opens a redo for its source: a new forward
// generation and the position the source forwards again from. Partition 0
// skips the local forwards of older generations still under way (they are
// in its log: a replay applies them there and drops the copies by
// position), and the source partition, told by a message, forwards its log
// again from that position, and everything after, under the new
// generation.
type fwdRedo struct {
	gen   uint32 // forwards of an older generation are skipped
	from  uint64 // the source's first position to forward again
	taken bool   // the source partition has forwarded again since
}

// redoForwardsMsg tells a source partition that forwards of its were lost.
type redoForwardsMsg struct{}

// failedForwards opens a redo for each source whose local forwards are in
// a failed commit's partition-0 events. Called by the log writer's
// completion, in commit order.
func (g *Gateway) failedForwards(evs []event) {
	from := map[int]uint64{}
	for i := range evs {
		e := &evs[i]
		if e.forwarded && e.origin == "" && e.srcSeq > 0 && e.src != 0 && !e.skip {
			if f, ok := from[e.src]; !ok || e.srcSeq < f {
				from[e.src] = e.srcSeq
			}
		}
	}
	if len(from) == 0 {
		return
	}
	g.redoMu.Lock()
	for src, f := range from {
		r := &g.redo[src]
		if r.taken || r.gen == 0 {
			r.from = f
		} else {
			r.from = min(r.from, f)
		}
		r.gen++
		r.taken = false
	}
	g.redoMu.Unlock()
	g.forwardRedos.Add(uint64(len(from)))
	for src, f := range from {
		g.cfg.Logger.Warn("forwards to partition 0 not committed; the source partition forwards them again",
			"partition", src, "from_position", f)
		g.system.Root.Send(g.parts[src], &redoForwardsMsg{})
	}
}

// skipStaleForwards marks the local forwards of a successful commit's
// partition-0 events that a redo replaces (see fwdRedo).
func (g *Gateway) skipStaleForwards(evs []event) {
	if g.forwardRedos.Load() == 0 {
		return // the usual case: no lock per commit
	}
	g.redoMu.Lock()
	defer g.redoMu.Unlock()
	for i := range evs {
		e := &evs[i]
		if e.forwarded && e.origin == "" && e.srcSeq > 0 && e.fwdGen < g.redo[e.src].gen {
			e.skip = true
		}
	}
}

// takeRedo returns the source's current forward generation and where to
// forward again from (0: nothing to forward again), and marks it taken.
func (g *Gateway) takeRedo(src int) (gen uint32, from uint64) {
	if g.redo == nil {
		return 0, 0
	}
	g.redoMu.Lock()
	defer g.redoMu.Unlock()
	r := &g.redo[src]
	if r.taken {
		return r.gen, 0
	}
	r.taken = true
	return r.gen, r.from
}

var errReadEnough = errors.New("read enough")

// redoForwards forwards the log again from the redo's position, through
// what the partition has applied, under the new generation.
func (p *partition) redoForwards() {
	gen, from := p.g.takeRedo(p.id)
	p.fwdGen = gen
	for i := range p.forwardBuf {
		// Forwards are tagged when queued; any still buffered go out
		// under the new generation, or partition 0 would skip them.
		p.forwardBuf[i].fwdGen = gen
	}
	if from == 0 || !p.active || p.id == 0 {
		return // nothing new, or a recovery forwards again anyway
	}
	p.flushForward()
	// Each entry's forwards are numbered from 0 again, as the first run
	// numbered them: partition 0 applies a forward once by (source,
	// position, index), and the first copy may be applied after all (the
	// failed commit can be on replicas: the gateway taking partition 0
	// over replays it).
	own, idx := p.applied, p.fwdIdx
	n := 0
	err := p.g.store.ReadLog(p.id, from-1, func(seq uint64, le *pb.LogEntry) error {
		if seq > own {
			return errReadEnough
		}
		e := eventOf(le)
		if e.tick || e.forwarded || p.g.poisoned(p.id, seq, e) || !p.forwardedFirst(seq) {
			return nil
		}
		p.applied, p.fwdIdx = seq, 0
		p.forward(e)
		n++
		if len(p.forwardBuf) >= 256 {
			p.flushForward()
		}
		return nil
	})
	p.applied, p.fwdIdx = own, idx
	p.flushForward()
	if err != nil && !errors.Is(err, errReadEnough) {
		// The entries stay in the log (it is truncated only past what
		// partition 0 logged): a take-over or restart forwards them.
		p.g.cfg.Logger.Error("forwarding again to partition 0 failed", "partition", p.id, "from_position", from, "error", err)
		return
	}
	p.g.cfg.Logger.Info("forwarded to partition 0 again", "partition", p.id, "from_position", from, "through_position", own, "entries", n)
}

// fwdDrop is a run of forwards partition 0 dropped as applied before, kept
// only while the debug log is on: the record a fault test needs to tell a
// resend from a forward lost to a stale position.
type fwdDrop struct {
	from, through uint64
	n             int
}

// noteFwdDrop records a forward of src at seq dropped by position.
func (p *partition) noteFwdDrop(src int, seq uint64) {
	if !p.g.debugForwards {
		return
	}
	if p.fwdDrops == nil {
		p.fwdDrops = map[int]*fwdDrop{}
	}
	d := p.fwdDrops[src]
	if d == nil {
		p.fwdDrops[src] = &fwdDrop{from: seq, through: seq, n: 1}
		return
	}
	d.from, d.through, d.n = min(d.from, seq), max(d.through, seq), d.n+1
}

// logFwdDrops logs (debug) and forgets the forwards dropped by position.
func (p *partition) logFwdDrops(when string) {
	for src, d := range p.fwdDrops {
		p.g.cfg.Logger.Debug("partition 0 dropped forwards it had applied", "when", when, "source", src,
			"from_position", d.from, "through_position", d.through, "events", d.n, "applied_through", p.fwdApplied[src].seq)
	}
	clear(p.fwdDrops)
}
