package cluster

import (
	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Input taken while cut off from the majority (C11). A gateway that does
// not hear from a majority serves no partition, yet its devices keep
// publishing to it. With minority_input "log" (the default) it parks
// their events in its store, numbered for forwarding like any other
// (C7), and acknowledges them; once it hears from a majority again, they
// are forwarded to the partitions' gateways in order. Until then they are
// on this gateway's disk only: a gateway lost for good while cut off
// loses them. A restart forwards what is still parked.

// Minority input policies (NodeConfig.MinorityInput).
const (
	MinorityLog    = "log"
	MinorityRefuse = "refuse"
)

// parking reports whether input is parked now.
func (n *Node) parking() bool {
	return n.cfg.MinorityInput != MinorityRefuse && n.Fenced()
}

// park stores entries of p; false when the store refused them (their
// publishers then wait for the forward, as with "refuse").
func (n *Node) park(p int, entries []*pb.LogEntry) bool {
	if err := n.store.Park(p, entries); err != nil {
		n.log.Error("input not parked; its publishers wait until it is forwarded", "partition", p, "events", len(entries), "error", err)
		return false
	}
	n.parkedIn.Add(uint64(len(entries)))
	n.parkedNow.Add(int64(len(entries)))
	return true
}

// unpark deletes a forwarded batch's parked entries from the store.
func (n *Node) unpark(p int, b *fwdBatch) {
	var es []*pb.LogEntry
	for i, e := range b.entries {
		if b.parked[i] {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return
	}
	n.parkedNow.Add(-int64(len(es)))
	if err := n.store.Unpark(p, es); err != nil {
		// Forwarded again after a restart; the server knows them (C7).
		n.log.Warn("forwarded input not removed from the parked input", "partition", p, "error", err)
	}
}

// parkWaiting parks the events that were waiting to be forwarded when the
// gateway was cut off, and acknowledges them.
func (n *Node) parkWaiting() {
	if !n.parking() {
		return
	}
	for p, f := range n.fwd {
		n.parkWaitingOf(p, f)
	}
}

func (n *Node) parkWaitingOf(p int, f *forwarder) {
	f.order.Lock()
	defer f.order.Unlock()
	n.mu.Lock()
	var es []*pb.LogEntry
	if b := f.inflight; b != nil {
		for i, e := range b.entries {
			if !b.parked[i] {
				es = append(es, e)
			}
		}
	}
	for i, e := range f.queue {
		if !f.parked[i] {
			es = append(es, e)
		}
	}
	n.mu.Unlock()
	if len(es) == 0 || !n.park(p, es) {
		return
	}
	// Mark them parked and take their dones; the batch in flight may
	// have been logged meanwhile (its dones ran): those are unparked.
	mine := make(map[*pb.LogEntry]bool, len(es))
	for _, e := range es {
		mine[e] = true
	}
	var dones []func(error)
	n.mu.Lock()
	take := func(entries []*pb.LogEntry, ds []func(error), parked []bool) {
		for i, e := range entries {
			if mine[e] {
				delete(mine, e)
				parked[i] = true
				if ds != nil && ds[i] != nil {
					dones = append(dones, ds[i])
					ds[i] = nil
				}
			}
		}
	}
	if b := f.inflight; b != nil {
		take(b.entries, b.dones, b.parked)
	}
	take(f.queue, f.dones, f.parked)
	n.mu.Unlock()
	if len(mine) > 0 {
		gone := make([]*pb.LogEntry, 0, len(mine))
		for e := range mine {
			gone = append(gone, e)
		}
		n.unpark(p, &fwdBatch{entries: gone, parked: trues(len(gone))})
	}
	for _, d := range dones {
		d(actors.ErrParked)
	}
}

func trues(n int) []bool {
	b := make([]bool, n)
	for i := range b {
		b[i] = true
	}
	return b
}

// loadParked queues what a previous run parked and had not forwarded.
func (n *Node) loadParked() error {
	total := 0
	for p, f := range n.fwd {
		es, err := n.store.Parked(p)
		if err != nil {
			return err
		}
		f.queue = append(f.queue, es...)
		f.dones = append(f.dones, make([]func(error), len(es))...)
		f.parked = append(f.parked, trues(len(es))...)
		f.noteBusy()
		total += len(es)
	}
	n.parkedNow.Store(int64(total))
	if total > 0 {
		n.log.Info("forwarding input parked before the restart", "events", total)
	}
	return nil
}
