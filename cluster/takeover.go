package cluster

// How a partition comes to this gateway (this file): the take-over of a
// partition nobody serves (every live gateway is asked what it holds; the
// best holder hands it here, or this gateway serves it from its own
// store), and serving it, after a take-over or a hand-off. While a
// take-over is under way this gateway says so in its holdings.
//
// Invariants kept here: C8 (no two gateways take one partition over at
// once: each marks its take-over before it asks, and backs off on another's
// mark or a missing answer), C3 (a partition is served at an epoch one
// above any this gateway has seen for it), C9 (a gateway cut off serves
// nothing, even what was handed to it), C16 (every gateway asked promised
// the take-over's epoch before it serves).

import (
	"context"
	"time"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

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
	n.mu.Unlock()
	best, bestEpoch, bestSeq := n.name, uint64(0), n.store.LastSeq(p)
	bestEpoch, _ = n.epoch(p)
	promised := n.promisedTo(p).epoch
	asked := n.askAll(p, peers, "status", func(id uint64) *pb.StreamMsg {
		return &pb.StreamMsg{Body: &pb.StreamMsg_StatusRequest{StatusRequest: &pb.StatusRequest{Id: id}}}
	}, func(a statusAnswer) bool {
		for _, h := range a.reply.GetPartitions() {
			if int(h.Partition) != p {
				continue
			}
			if h.Serving {
				n.backOff(p, "") // served after all
				return false
			}
			if h.Taking {
				n.backOff(p, "another gateway is taking it over", "gateway", a.from)
				return false
			}
			if h.Epoch > bestEpoch || h.Epoch == bestEpoch && h.LastSeq > bestSeq {
				best, bestEpoch, bestSeq = a.from, h.Epoch, h.LastSeq
			}
			promised = max(promised, h.Promised)
		}
		return true
	})
	if !asked {
		return
	}
	// Every gateway asked promises the new epoch before anything is
	// served at it (C16), this one first.
	epoch := max(bestEpoch, promised) + 1
	if !n.promiseAll(p, epoch, best, peers) {
		return
	}
	if best == n.name {
		why := "take-over"
		if bestEpoch == 0 {
			why = "new partition" // nobody served it before: a new cluster
		}
		n.serveClaimed(p, epoch-1, why)
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

// promise is an epoch of a partition promised to a take-over (C16).
type promise struct {
	epoch uint64
	to    string // the member taking the partition over (this node's name for its own)
	// holder: for this gateway's own take-over, the holder it asks for
	// the partition, whose catch-up and hand-off come at the older epoch.
	holder string
}

// promisedTo is the highest epoch of p this gateway promised, and to whom.
func (n *Node) promisedTo(p int) promise {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.promised[p]
}

// promiseEpoch promises epoch of p to a take-over by member: from now on
// this gateway takes nothing of p from an older epoch (replication, safe
// checkpoints, catch-ups, hand-offs) and promises epoch to nobody else.
// It refuses while it serves p, when its copy is of epoch or newer (a
// take-over that asked before that copy was made chose too low an epoch),
// and when it promised epoch or more to another take-over; it answers
// with the highest epoch it has promised. The promise is stored before it
// is given, so it holds across a restart.
//
// holder is set for this gateway's own take-over only: the gateway it
// asks for the partition, whose catch-up and hand-off come at the older
// epoch (olderThanPromised).
func (n *Node) promiseEpoch(p int, epoch uint64, member, holder string) (bool, uint64) {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	pr := n.promisedTo(p)
	if n.gw.Serving(p) {
		return false, pr.epoch
	}
	if cur, err := n.epoch(p); err != nil || cur >= epoch {
		return false, max(pr.epoch, cur)
	}
	if pr.epoch > epoch || pr.epoch == epoch && pr.to != member {
		return false, pr.epoch
	}
	if pr.epoch == epoch {
		n.mu.Lock()
		n.promised[p].holder = holder
		n.mu.Unlock()
		return true, epoch // asked again
	}
	if err := n.store.SetPromised(p, epoch, member); err != nil {
		n.log.Error("epoch promise not stored; refused", "partition", p, "epoch", epoch, "to", member, "error", err)
		return false, pr.epoch
	}
	n.mu.Lock()
	n.promised[p] = promise{epoch: epoch, to: member, holder: holder}
	n.mu.Unlock()
	return true, epoch
}

// promiseAll has this gateway and every peer asked about p promise epoch
// to this take-over (C16); false, having backed off, when one refuses or
// does not answer in time.
func (n *Node) promiseAll(p int, epoch uint64, holder string, peers []string) bool {
	if ok, promised := n.promiseEpoch(p, epoch, n.name, holder); !ok {
		n.backOff(p, "this gateway cannot promise the epoch (it promised a newer one to another take-over, or holds a newer copy)",
			"epoch", epoch, "promised", promised)
		return false
	}
	ok := n.askAll(p, peers, "epoch promise", func(id uint64) *pb.StreamMsg {
		return &pb.StreamMsg{Body: &pb.StreamMsg_Promise{Promise: &pb.EpochPromise{Id: id, Partition: uint32(p), Epoch: epoch}}}
	}, func(a statusAnswer) bool {
		if a.promised == nil || int(a.promised.Partition) != p || !a.promised.Ok {
			n.backOff(p, "another gateway refused to promise the epoch", "gateway", a.from, "epoch", epoch, "its_promised", a.promised.GetPromised())
			return false
		}
		return true
	})
	if ok {
		n.log.Debug("every gateway asked promised the epoch", "partition", p, "epoch", epoch, "gateways", len(peers))
	}
	return ok
}

// askAll sends msg(id) to every peer and hands each answer to take until
// all have answered. It returns false, having backed off, when a peer
// cannot be sent to (a member in the view without an address yet may be
// taking p over), one has not answered within 2 s (the silent one may be
// taking p over itself: deciding without it could serve p twice), or take
// says to stop (take backs off itself). round names the question in the
// back-off lines.
func (n *Node) askAll(p int, peers []string, round string, msg func(id uint64) *pb.StreamMsg, take func(statusAnswer) bool) bool {
	id, ch, done := n.request(len(peers))
	defer done()
	for _, m := range peers {
		if !n.sendTo(m, msg(id), nil) {
			n.backOff(p, "a gateway in the view cannot be asked", "round", round, "gateway", m)
			return false
		}
	}
	timeout := time.After(2 * time.Second)
	for got := 0; got < len(peers); got++ {
		select {
		case a := <-ch:
			if !take(a) {
				return false
			}
		case <-timeout:
			n.backOff(p, "not every gateway answered", "round", round, "asked", len(peers), "answered", got)
			return false
		case <-n.stop:
			n.backOff(p, "")
			return false
		}
	}
	return true
}

// promiseAsked answers another gateway's EpochPromise.
func (n *Node) promiseAsked(from string, req *pb.EpochPromise) {
	p := int(req.Partition)
	ok, promised := n.promiseEpoch(p, req.Epoch, from, "")
	if !ok {
		n.log.Debug("epoch promise refused", "partition", p, "epoch", req.Epoch, "to", from, "promised", promised, "serving", n.gw.Serving(p))
	}
	n.sendTo(from, &pb.StreamMsg{Body: &pb.StreamMsg_Promised{Promised: &pb.EpochPromised{Id: req.Id, Partition: req.Partition, Ok: ok, Promised: promised}}}, nil)
}

// olderThanPromised reports whether what from sends of p at epoch is
// from before the epoch this gateway promised a take-over (C16): the
// sender served or held p before that take-over, and must not have it
// stored here. Only the holder this gateway's own take-over asked for
// the partition sends its copy at the older epoch.
func (n *Node) olderThanPromised(p int, epoch uint64, from string) bool {
	return n.promisedTo(p).refuses(n.name, epoch, from)
}

// refuses is olderThanPromised for the promise pr of the gateway self.
func (pr promise) refuses(self string, epoch uint64, from string) bool {
	return epoch < pr.epoch && !(pr.to == self && from == pr.holder)
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

// holdings is what this gateway holds of every partition, as told to
// member.
func (n *Node) holdings(id uint64, member string) *pb.StatusReply {
	r := &pb.StatusReply{Id: id}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := 0; p < n.parts; p++ {
		ep, _ := n.epoch(p)
		r.Partitions = append(r.Partitions, &pb.PartitionHolding{Partition: uint32(p), Serving: n.gw.Serving(p), Epoch: ep,
			LastSeq: n.store.LastSeq(p), Replica: n.holding[p] != "" && n.caughtUp[p], Taking: n.taking[p].holds(now, member),
			Promised: n.promised[p].epoch})
	}
	return r
}

// request registers a question to k gateways: the answers that carry id
// arrive on ch until done is called.
func (n *Node) request(k int) (id uint64, ch chan statusAnswer, done func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reqID++
	id = n.reqID
	ch = make(chan statusAnswer, k)
	n.requests[id] = ch
	return id, ch, func() {
		n.mu.Lock()
		delete(n.requests, id)
		n.mu.Unlock()
	}
}

// statusAnswer is a StatusReply or an EpochPromised, with its sender.
type statusAnswer struct {
	from     string
	reply    *pb.StatusReply
	promised *pb.EpochPromised
}

// serve makes this gateway serve p after a hand-off (claims p first).
func (n *Node) serve(p int, prevEpoch uint64, why string) {
	if !n.claimWait(p) {
		n.backOff(p, "")
		return
	}
	defer n.unclaim(p)
	n.serveClaimed(p, prevEpoch, why)
}

// serveClaimed makes this gateway serve p (p claimed by the caller). Until
// it serves, its answers say it is taking p over (C8); a take-over set
// that mark before it asked, and it ends here either way.
func (n *Node) serveClaimed(p int, prevEpoch uint64, why string) {
	n.markTaking(p, takeOverMark, "")
	defer n.backOff(p, "")
	select {
	case <-n.servingOpen:
	case <-n.stop:
		return
	}
	if n.gw.Serving(p) {
		return
	}
	if n.Fenced() {
		// A hand-off that reached a gateway still cut off (C9): it holds
		// the partition's state as a replica, and takes it over once it
		// hears from a majority again.
		n.log.Warn("partition not served: no majority heard yet", "partition", p, "why", why)
		return
	}
	cur, _ := n.epoch(p)
	epoch := max(cur, prevEpoch) + 1
	if pr := n.promisedTo(p); pr.to == n.name && pr.epoch > epoch {
		// This gateway's take-over was promised a newer epoch than the
		// holder's hand-off carries (C16).
		epoch = pr.epoch
	}
	start := time.Now()
	n.mu.Lock()
	n.holding[p], n.caughtUp[p] = "", false
	n.replicas[p] = map[string]*replica{}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The new epoch counts from now: replication from the previous
	// server arriving while the partition recovers is refused as stale,
	// not appended after the log the recovery read (a safe checkpoint
	// ahead of what this gateway applied was stored that way).
	n.epochs[p].Store(epoch)
	if err := n.gw.Serve(ctx, p, epoch); err != nil {
		n.epochs[p].Store(0) // read from the store again
		n.log.Error("partition not served", "partition", p, "why", why, "error", err)
		return
	}
	n.epochs[p].Store(epoch) // Serve stored it
	n.publishMeta()
	if why == "take-over" {
		n.failovers.Add(1)
	}
	took := time.Since(start)
	n.log.Debug("serving partition", "partition", p, "epoch", epoch, "why", why, "took", took.Round(time.Millisecond))
	n.changes.add("serving partitions", "why", why, p, took)
	n.wakeLoop()
}
