package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Clustered mode (a durable gateway with a ClusterLink; package cluster
// drives it). A gateway serves some partitions, not all. Invariants, on
// top of D1-D4:
//
//	C4: a partition is served by at most one gateway of a healthy cluster;
//	    events of a partition this gateway does not serve are forwarded to
//	    the gateway that does, and acknowledged once logged there.
//	C5: a partition applies a log entry only once the entry is on its
//	    replicas too (a group commit is handed to the partitions after the
//	    replicas acknowledged it), so a replica that takes over replays
//	    exactly what the partition had applied and its rows get the same
//	    ids (D2).
//	C6: a checkpoint goes to the replicas ("safe") only after every row
//	    produced before it has left the outbox; the owner keeps its log
//	    after the last safe checkpoint, so a replica that takes over
//	    re-emits, never misses, the rows the owner had not delivered.
//	C7: an event forwarded by another gateway carries (origin, origin
//	    seq), numbered per partition and sent one batch at a time, so a
//	    resend after a fail-over is applied once.

// ErrParked is what ClusterLink.Forward's done gets for events parked on
// this gateway while it is cut off from the majority (C11): taken, on
// this gateway's disk, forwarded once it hears a majority again.
var ErrParked = errors.New("actors: forwarded events parked on this gateway until it hears a majority")

// ClusterLink is what a clustered gateway asks of the cluster layer.
type ClusterLink interface {
	// Forward sends entries of partition p, which this gateway does not
	// serve, to the gateway that does; done(nil) runs once they are logged
	// and replicated there. The link retries until then (C7), or until it
	// stops (done(err): the events were not taken). Cut off from the
	// majority, it may park them in this gateway's store instead (C11):
	// done(ErrParked) then, the events are taken and forwarded later, but
	// not logged there yet.
	Forward(p int, entries []*pb.LogEntry, done func(error))
	// Replicate ships a group commit to the replicas of its partitions;
	// the channel yields nil once they all have it, or an error when the
	// gateway may no longer serve.
	Replicate(groups []state.LogGroup) <-chan error
	// SafeCheckpoint ships a safe checkpoint to the partition's replicas.
	SafeCheckpoint(p int, sc *pb.SafeCheckpoint)
	// Fenced reports that the gateway lost its quorum: it must not
	// deliver rows.
	Fenced() bool
	// Forwarding reports whether events of partition p wait in Forward
	// (queued or in flight).
	Forwarding(p int) bool
}

// clusterState is the gateway's share of clustered mode.
type clusterState struct {
	link    ClusterLink
	serving []bool   // guarded by logWriter.mu (checked where events are queued)
	epochs  []uint64 // guarded by mu
	mu      sync.Mutex
	// safe: per partition, the through position of its last safe
	// checkpoint, and a checkpoint waiting for its rows to drain (C6).
	safeThrough []uint64
	pending     []*pendingSafe
}

type pendingSafe struct {
	sc *pb.SafeCheckpoint
	hw map[string]uint64
}

// SetCluster makes a durable gateway clustered, before Recover: it serves
// no partition until Serve.
func (g *Gateway) SetCluster(link ClusterLink) error {
	if g.store == nil {
		return fmt.Errorf("actors: a clustered gateway needs durable state")
	}
	if !g.cfg.Clustered {
		// Its partitions started serving everything: their empty state
		// would be checkpointed over the copies it holds as a replica.
		return fmt.Errorf("actors: SetCluster on a gateway made without Config.Clustered")
	}
	n := g.cfg.Partitions
	g.cl = &clusterState{link: link, serving: make([]bool, n), epochs: make([]uint64, n),
		safeThrough: make([]uint64, n), pending: make([]*pendingSafe, n)}
	if o, ok := g.sink.(*Outputs); ok {
		o.fenced = link.Fenced
	}
	g.wg.Add(1)
	go g.clusterTimers()
	return nil
}

// Ready reports whether the gateway has deployed its jobs and recovered
// (a clustered one serves partitions only then).
func (g *Gateway) Ready() bool { return g.ready.Load() && !g.closed.Load() }

// Partitions is the number of partitions.
func (g *Gateway) Partitions() int { return g.cfg.Partitions }

// Store is the gateway's store (nil in memory).
func (g *Gateway) Store() *state.Store { return g.store }

// Serving reports whether this gateway serves partition p.
func (g *Gateway) Serving(p int) bool {
	if g.cl == nil {
		return true
	}
	g.log.mu.Lock()
	defer g.log.mu.Unlock()
	return g.cl.serving[p]
}

// Epoch is partition p's ownership epoch here.
func (g *Gateway) Epoch(p int) uint64 {
	g.cl.mu.Lock()
	defer g.cl.mu.Unlock()
	return g.cl.epochs[p]
}

// Serve makes this gateway serve partition p from epoch on: the partition
// recovers from the store (its checkpoint and the log after it, which the
// previous owner replicated here) and then takes events.
func (g *Gateway) Serve(ctx context.Context, p int, epoch uint64) error {
	if err := g.store.SetEpoch(p, epoch); err != nil {
		return err
	}
	sc, err := g.store.LoadSafeCheckpoint(p)
	if err != nil {
		return err
	}
	g.log.broken[p].Store(false)
	g.cl.mu.Lock()
	g.cl.epochs[p] = epoch
	g.cl.pending[p] = nil
	g.cl.safeThrough[p] = 0
	if sc != nil {
		g.cl.safeThrough[p] = sc.Through
	}
	g.cl.mu.Unlock()
	res, err := g.system.Root.RequestFuture(g.parts[p], &serveMsg{}, timeoutOf(ctx)).Result()
	if err == nil {
		err = res.(*doneReply).err
	}
	if err != nil {
		return fmt.Errorf("actors: serve partition %d: %w", p, err)
	}
	g.log.mu.Lock()
	g.cl.serving[p] = true
	g.log.mu.Unlock()
	return nil
}

// Release stops serving partition p: events queued for it are applied,
// then it writes a checkpoint and drops its state. It returns that
// checkpoint and the outbox positions its rows reach: once they have
// drained (MakeSafe), the checkpoint is safe for the next owner (C6).
func (g *Gateway) Release(ctx context.Context, p int) (*pb.SafeCheckpoint, map[string]uint64, error) {
	g.StopIntake(p)
	g.log.sync()
	res, err := g.system.Root.RequestFuture(g.parts[p], &releaseMsg{}, timeoutOf(ctx)).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("actors: release partition %d: %w", p, err)
	}
	r := res.(*releaseReply)
	g.cl.mu.Lock()
	g.cl.pending[p] = nil
	g.cl.mu.Unlock()
	// Stopped, with every commit of p done: the next serve recovers p
	// from its log, failed commits' entries included.
	g.log.broken[p].Store(false)
	return r.sc, r.hw, r.err
}

// CommitFailed reports whether a group commit of partition p failed since
// p was last served or released (cluster.Gateway): p then applies no
// later commit (logWriter.complete).
func (g *Gateway) CommitFailed(p int) bool {
	return g.log != nil && p >= 0 && p < len(g.log.broken) && g.log.broken[p].Load()
}

// StopIntake makes the gateway stop taking events for partition p at once
// (Release then stops the partition itself).
func (g *Gateway) StopIntake(p int) {
	g.log.mu.Lock()
	g.cl.serving[p] = false
	g.log.mu.Unlock()
}

// Abandon stops serving partition p without a hand-off: another gateway
// takes it over (this one lost its quorum). Unless keep, it gives up its
// undelivered rows of p, which the new owner re-emits from its safe
// checkpoint (C6).
//
// Its copy of p stays, keep or not: it may be the only one a majority
// can reach (dropping it lost whole partitions under churn: a gateway
// taking p over found the emptied copy, epoch kept, the newest). Without
// keep it becomes what a replica holds, so that rows given up are emitted
// again should this copy be served. Entries of its last, failed commits
// stay in it, after everything p applied (no commit is applied after a
// failed one: logWriter.broken), so a gateway serving this copy applies
// them in order; their publishers were refused and resend (with
// sequence_field the resends are dropped).
func (g *Gateway) Abandon(ctx context.Context, p int, keep bool) error {
	if _, _, err := g.Release(ctx, p); err != nil {
		return err
	}
	if keep {
		return nil
	}
	if o, ok := g.sink.(*Outputs); ok {
		o.Abandon(p)
	}
	g.cl.mu.Lock()
	g.cl.safeThrough[p] = 0
	g.cl.mu.Unlock()
	// The rows given up are re-emitted by whoever serves p next from the
	// safe checkpoint: this copy goes back to it too.
	return g.store.ReturnToSafe(p)
}

// ErrNotDrained: a checkpoint's rows had not left the outbox when the
// wait for them ended; it was not made safe.
var ErrNotDrained = errors.New("actors: the checkpoint's rows are still in the outbox")

// drainPoll is how often MakeSafe looks at the outbox.
const drainPoll = 20 * time.Millisecond

// MakeSafe waits until the outbox rows up to hw (Release's) have left the
// outbox, then stores sc as partition p's safe checkpoint and ships it to
// the replicas (C6). When ctx ends first, it returns ErrNotDrained.
func (g *Gateway) MakeSafe(ctx context.Context, p int, sc *pb.SafeCheckpoint, hw map[string]uint64) error {
	for !g.drained(hw) {
		select {
		case <-ctx.Done():
			if g.drained(hw) {
				return g.makeSafe(p, sc)
			}
			return fmt.Errorf("%w: partition %d: %w", ErrNotDrained, p, ctx.Err())
		case <-time.After(drainPoll):
		}
	}
	return g.makeSafe(p, sc)
}

// drained reports whether the outbox rows up to hw have left the outbox.
func (g *Gateway) drained(hw map[string]uint64) bool {
	heads, err := g.store.OutboxHeads()
	return err == nil && state.Drained(hw, heads)
}

// makeSafe stores sc as partition p's safe checkpoint (its rows have
// drained) and ships it to the replicas.
func (g *Gateway) makeSafe(p int, sc *pb.SafeCheckpoint) error {
	if err := g.store.SaveSafeCheckpoint(p, sc); err != nil {
		return err
	}
	g.cl.mu.Lock()
	g.cl.safeThrough[p] = max(g.cl.safeThrough[p], sc.Through)
	g.cl.mu.Unlock()
	g.cl.link.SafeCheckpoint(p, sc)
	return nil
}

// offerSafe records a checkpoint the partition just wrote as the next
// candidate safe checkpoint, unless one is waiting already (C6).
func (g *Gateway) offerSafe(p int, cp *pb.Checkpoint, through uint64) {
	g.cl.mu.Lock()
	defer g.cl.mu.Unlock()
	if g.cl.pending[p] != nil {
		return
	}
	g.cl.pending[p] = &pendingSafe{sc: &pb.SafeCheckpoint{Checkpoint: cp, Through: through, Epoch: g.cl.epochs[p]}, hw: g.store.OutboxHighWater()}
}

// localThrough limits a partition's own log truncation to its last safe
// checkpoint's: a replica that is caught up later needs the log after it.
func (g *Gateway) localThrough(p int, through uint64) uint64 {
	if g.cl == nil {
		return through
	}
	g.cl.mu.Lock()
	defer g.cl.mu.Unlock()
	return min(through, g.cl.safeThrough[p])
}

// promoteSafe ships every waiting checkpoint whose rows have drained.
func (g *Gateway) promoteSafe() {
	var heads map[string]uint64 // read once a round: one seek per output
	for p := range g.cl.pending {
		g.cl.mu.Lock()
		ps := g.cl.pending[p]
		g.cl.mu.Unlock()
		if ps == nil {
			continue
		}
		if heads == nil {
			var err error
			if heads, err = g.store.OutboxHeads(); err != nil {
				g.cfg.Logger.Error("outbox unreadable; safe checkpoints wait", "error", err)
				return
			}
		}
		if !state.Drained(ps.hw, heads) {
			continue
		}
		g.log.mu.Lock()
		serving := g.cl.serving[p]
		g.log.mu.Unlock()
		g.cl.mu.Lock()
		if g.cl.pending[p] == ps {
			g.cl.pending[p] = nil
		}
		g.cl.mu.Unlock()
		if !serving {
			continue
		}
		if err := g.makeSafe(p, ps.sc); err != nil {
			g.cfg.Logger.Error("safe checkpoint not stored", "partition", p, "error", err)
		}
	}
}

// IngestForwarded logs entries another gateway forwarded for partition p;
// false when this gateway does not serve p (the sender retries elsewhere).
// The commit's Wait returns once they are logged and replicated.
func (g *Gateway) IngestForwarded(p int, entries []*pb.LogEntry) (Commit, bool) {
	evs := make([]event, len(entries))
	for i, le := range entries {
		evs[i] = eventOf(le)
	}
	gen, ok := g.log.addServing(p, evs...)
	if ok {
		g.eventsIn.Add(uint64(len(entries)))
	}
	return Commit{gen}, ok
}

func eventOf(le *pb.LogEntry) event {
	e := event{job: le.Job, input: le.Input, device: le.Device, payload: le.Payload, arrival: le.Arrival, tick: le.Tick,
		forwarded: le.Forwarded, src: int(le.SourcePartition), srcSeq: le.SourceSeq, srcIdx: le.SourceIndex, mark: le.Mark,
		origin: le.Origin, oseq: le.OriginSeq, meta: le.Metadata}
	if len(le.Targets) > 0 {
		e.targets = make([]routeTarget, len(le.Targets))
		for i, t := range le.Targets {
			e.targets[i] = routeTarget{job: t.Job, input: t.Input}
		}
	}
	return e
}

func entryOf(e *event) *pb.LogEntry {
	le := &pb.LogEntry{Job: e.job, Input: e.input, Device: e.device, Payload: e.payload, Arrival: e.arrival,
		Tick: e.tick, Forwarded: e.forwarded, SourcePartition: uint32(e.src), SourceSeq: e.srcSeq, SourceIndex: e.srcIdx, Mark: e.mark,
		Origin: e.origin, OriginSeq: e.oseq, Metadata: e.meta}
	for _, t := range e.targets {
		le.Targets = append(le.Targets, &pb.RouteTarget{Job: t.job, Input: t.input})
	}
	if e.rec != nil { // a Devices event: logged as JSON
		le.Payload = value.AppendRecordJSON(nil, e.rec)
	}
	return le
}

// forwardEvent sends one event to the gateway serving its partition; the
// commit is done once it is logged there.
func (g *Gateway) forwardEvent(p int, ev event) *commitGen {
	gen := newCommitGen()
	close(gen.sent)
	g.cl.link.Forward(p, []*pb.LogEntry{entryOf(&ev)}, func(err error) {
		if errors.Is(err, ErrParked) {
			err = nil // parked on this gateway's disk: the publisher may be acknowledged
		}
		gen.err = err
		close(gen.done)
	})
	return gen
}

// forwardToZero sends events for the jobs that run on partition 0 only to
// the gateway serving partition 0; once logged there, the source may
// truncate its log past them (D3).
func (g *Gateway) forwardToZero(src int, evs []event) {
	entries := make([]*pb.LogEntry, len(evs))
	var last uint64
	for i := range evs {
		entries[i] = entryOf(&evs[i])
		last = max(last, evs[i].srcSeq)
	}
	g.cl.link.Forward(0, entries, func(err error) {
		if err != nil {
			// Not logged by partition 0 (parked here while cut off, or
			// not taken): the source keeps its log past them. A parked
			// forward counted as logged let a checkpoint truncate the
			// source's log, and its replicas', past events partition 0
			// never logged; a gateway taking the source over then could
			// not forward them again.
			return
		}
		if a := &g.fwdLogged[src]; a.Load() < last {
			a.Store(last)
		}
	})
}

// ClusterTimers runs the clustered gateway's periodic work until ctx ends:
// promoting safe checkpoints.
func (g *Gateway) clusterTimers() {
	defer g.wg.Done()
	t := time.NewTicker(max(g.cfg.CheckpointInterval/2, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.promoteSafe()
		}
	}
}

type (
	serveMsg     struct{}
	releaseMsg   struct{}
	releaseReply struct {
		sc  *pb.SafeCheckpoint
		hw  map[string]uint64
		err error
	}
)
