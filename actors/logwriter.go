package actors

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// The ingest log's group commit (D1): events queued, written and synced
// in one batch, then handed to their partitions in log order.

// logWriter is the group commit of the ingest log (D1): Ingest queues an
// event and waits; the log writer actor (the ingest source actor) writes
// everything queued in one synced batch, wakes the waiters, then hands
// the events to their partitions in log order. The actor has the
// gateway's restart policy: a commit that panics is settled by
// settleAfterPanic before the restarted actor goes on.
type logWriter struct {
	g        *Gateway
	interval time.Duration
	mu       sync.Mutex
	pending  [][]event // per partition
	touched  []int
	gen      *commitGen // collecting events
	inflight *commitGen // being committed and sent
	pid      *actor.PID // the log writer actor
	kicked   atomic.Bool
	last     time.Time // when the last commit began
	cur      atomic.Pointer[commitWork]
	restarts atomic.Uint64
	stop     chan struct{}
	entries  []pb.LogEntry // reused between commits (not when clustered)
	// Clustered: commits waiting for their replicas, in order (C5).
	completions   chan completion
	completerDone chan struct{}
	// Back-pressure: bytes of events queued, being committed or waiting
	// in their partition's mailbox, until the partition applied them.
	// Device input waits in admit while they are over maxQueued (guarded
	// by mu; space is signalled on release).
	queuedBytes int64
	peakQueued  int64
	maxQueued   int64
	space       *sync.Cond
	closing     bool
	// broken: per partition, a clustered commit of it failed since it was
	// last served or released. Its later commits fail too: applied, they
	// would leave the failed one's entries (which stay in this log) as a
	// hole the partition skipped, and a replay that applies them would
	// forward them at positions partition 0 has already passed (the
	// churn nemesis lost readings from the jobs on partition 0 so). The
	// cluster gives such a partition up (Gateway.CommitFailed).
	broken []atomic.Bool
}

// commitGen is one group commit: done closes once it is durable (or
// failed, err), sent once its events are in their partitions' mailboxes.
type commitGen struct {
	done chan struct{}
	sent chan struct{}
	err  error
}

func newCommitGen() *commitGen {
	return &commitGen{done: make(chan struct{}), sent: make(chan struct{})}
}

func newLogWriter(g *Gateway) *logWriter {
	w := &logWriter{g: g, interval: g.cfg.SyncInterval, pending: make([][]event, g.cfg.Partitions),
		gen: newCommitGen(), stop: make(chan struct{}),
		completions: make(chan completion, 1024), completerDone: make(chan struct{}), maxQueued: g.cfg.MaxQueuedBytes,
		broken: make([]atomic.Bool, g.cfg.Partitions)}
	w.space = sync.NewCond(&w.mu)
	a := &logWriterActor{w: w}
	w.pid = g.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }, actor.WithGuardian(restartPolicy())))
	go w.completer()
	return w
}

// addServing queues events for partition p if this gateway serves it
// (always when not clustered); false otherwise, with nothing queued.
func (w *logWriter) addServing(p int, es ...event) (*commitGen, bool) {
	w.mu.Lock()
	if cl := w.g.cl; cl != nil && !cl.serving[p] {
		w.mu.Unlock()
		return nil, false
	}
	w.queue(p, es...)
	gen := w.gen
	w.mu.Unlock()
	w.wake()
	return gen, true
}

func (w *logWriter) queue(p int, es ...event) { // w.mu held
	if len(w.pending[p]) == 0 {
		w.touched = append(w.touched, p)
	}
	w.pending[p] = append(w.pending[p], es...)
	for i := range es {
		w.queuedBytes += eventBytes(&es[i])
	}
	w.peakQueued = max(w.peakQueued, w.queuedBytes)
}

// eventBytes is about what an event holds in memory until applied. An
// event a partition of this gateway forwarded to partition 0 shares its
// payload with the event it came from.
func eventBytes(e *event) int64 {
	if e.forwarded && e.origin == "" {
		return 128
	}
	return int64(len(e.payload)) + 128
}

// admit waits while the events not yet applied hold more than
// Config.MaxQueuedBytes: a device's input then waits in its connection
// (the broker stops reading it, TCP pushes back to the publisher), for
// QoS 0 too, which has no acknowledgement to withhold. Ticks and
// forwarded events do not wait.
func (w *logWriter) admit() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queuedBytes <= w.maxQueued || w.closing {
		return
	}
	start := time.Now()
	w.g.ingestWaits.Add(1)
	for w.queuedBytes > w.maxQueued && !w.closing {
		w.space.Wait()
	}
	ingestWaitSeconds.Add(time.Since(start).Seconds())
}

// release returns the bytes of applied (or refused) events.
func (w *logWriter) release(n int64) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.queuedBytes -= n
	w.mu.Unlock()
	w.space.Broadcast()
}

// wake tells the log writer actor there is work: one message however
// many events come before it runs.
func (w *logWriter) wake() {
	if w.kicked.CompareAndSwap(false, true) {
		w.g.system.Root.Send(w.pid, commitKick{})
	}
}

// Messages to the log writer actor.
type (
	commitKick  struct{} // events are queued
	commitClose struct{} // commit what is queued, and answer
)

// logWriterActor is the ingest source actor: it runs the group commits.
type logWriterActor struct{ w *logWriter }

func (a *logWriterActor) Receive(ctx actor.Context) {
	w := a.w
	switch ctx.Message().(type) {
	case *actor.Started:
		if w.last.IsZero() {
			w.last = time.Now()
		}
	case *actor.Restarting:
		w.restarts.Add(1)
		w.settleAfterPanic()
	case commitKick:
		w.kicked.Store(false) // events queued from now on kick again
		// Group commit: wait out the sync interval since the last one.
		if d := w.interval - time.Since(w.last); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
			}
		}
		w.last = time.Now()
		w.commit()
	case commitClose:
		defer ctx.Respond(commitClose{}) // even if the commit panics
		w.commit()
	}
}

// close commits what is queued and stops.
func (w *logWriter) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.space.Broadcast()
	close(w.stop)
	if _, err := w.g.system.Root.RequestFuture(w.pid, commitClose{}, time.Minute).Result(); err != nil {
		w.g.cfg.Logger.Error("ingest log writer did not commit at close", "error", err)
	}
	_ = w.g.system.Root.PoisonFuture(w.pid).Wait() // after what is in its mailbox
	close(w.completions)
	<-w.completerDone
}

// commitWork is the commit the log writer actor is making, until its
// events are handed to their partitions (or to the completer).
type commitWork struct {
	gen      *commitGen
	touched  []int
	batches  [][]event
	appended bool  // the write returned without error: the entries are in the log
	sent     int64 // bytes of events already in their partitions' mailboxes
}

// logCommitFault, set by tests, runs at stages of a commit (a panic
// there is the log writer actor's failure).
var logCommitFault func(stage string)

// ErrLogWriterRestarted: the log writer actor failed during the commit of
// these events; they were refused (their publishers resend).
var ErrLogWriterRestarted = errors.New("actors: the ingest log writer failed during the commit; events refused")

// settleAfterPanic settles the commit a panic interrupted. If its write
// went through, its waiters are acknowledged (the entries are in the log);
// otherwise they are refused, so their publishers resend, and forwards to
// partition 0 among them are forwarded again (fwdredo.go). The events not
// yet handed to their partitions give their bytes back, and the
// partitions it touched reload their state from their checkpoint and log,
// so none skips an entry of the log (D2) or misses one it was not sent.
// Clustered, the partitions are marked broken instead, as after a failed
// commit: the cluster serves them again, which reloads them the same way.
func (w *logWriter) settleAfterPanic() {
	c := w.cur.Swap(nil)
	if c == nil {
		return
	}
	durable := c.appended && w.g.cl == nil
	w.g.cfg.Logger.Error("ingest log writer restarted after a panic during a commit; the partitions it touched reload from their log",
		"partitions", len(c.touched), "written", c.appended, "acknowledged", durable)
	select {
	case <-c.gen.done:
	default:
		if !durable {
			c.gen.err = ErrLogWriterRestarted
			for i, p := range c.touched {
				if p == 0 {
					w.g.failedForwards(c.batches[i])
				}
			}
		}
		close(c.gen.done)
	}
	select {
	case <-c.gen.sent:
	default:
		close(c.gen.sent)
	}
	var n int64
	for _, b := range c.batches {
		for j := range b {
			n += eventBytes(&b[j])
		}
	}
	w.release(n - c.sent)
	if w.g.cl != nil {
		for _, p := range c.touched {
			w.broken[p].Store(true)
		}
		return
	}
	// Partition 0 first: the others' recoveries forward to it (D3).
	parts := slices.Clone(c.touched)
	slices.Sort(parts)
	for _, p := range parts {
		res, err := w.g.system.Root.RequestFuture(w.g.parts[p], &serveMsg{}, time.Minute).Result()
		if err == nil {
			err = res.(*doneReply).err
		}
		if err != nil {
			w.g.cfg.Logger.Error("partition could not reload from its log after the log writer failed", "partition", p, "error", err)
		}
	}
}

func (w *logWriter) commit() {
	w.mu.Lock()
	touched, gen := w.touched, w.gen
	if len(touched) == 0 {
		// Nothing to write. The commit in flight stays the one sync
		// waits for: an empty one in its place let Release overtake a
		// clustered commit still waiting for its replicas, and the
		// partition dropped that commit's events.
		w.mu.Unlock()
		return
	}
	batches := make([][]event, len(touched))
	for i, p := range touched {
		batches[i] = w.pending[p]
		w.pending[p] = nil
	}
	w.touched, w.gen, w.inflight = nil, newCommitGen(), gen
	w.mu.Unlock()
	// Cleared once the commit is handed on; a panic leaves it for
	// settleAfterPanic.
	w.cur.Store(&commitWork{gen: gen, touched: touched, batches: batches})
	if logCommitFault != nil {
		logCommitFault("before-append")
	}
	n := 0
	for _, b := range batches {
		n += len(b)
	}
	clustered := w.g.cl != nil
	if clustered {
		// The replicas read the entries after this returns: no reuse.
		w.entries = make([]pb.LogEntry, n)
	} else if cap(w.entries) < n {
		w.entries = make([]pb.LogEntry, n)
	}
	w.entries = w.entries[:n]
	groups := make([]state.LogGroup, len(touched))
	k := 0
	for i, p := range touched {
		groups[i] = state.LogGroup{Partition: p, Entries: make([]*pb.LogEntry, len(batches[i]))}
		for j := range batches[i] {
			le := &w.entries[k]
			k++
			*le = *entryOf(&batches[i][j])
			groups[i].Entries[j] = le
		}
	}
	start := time.Now()
	// A commit that takes long holds every PUBACK back: say so while it
	// lasts, not only in the histogram (the store logs whether the disk or
	// a write stall is the cause).
	slow := time.AfterFunc(slowCommit, func() {
		w.g.cfg.Logger.Warn("ingest log commit is taking long; publishes wait for their acknowledgement", "events", n, "waiting", slowCommit)
	})
	err := w.g.store.AppendGroup(context.Background(), groups)
	if c := w.cur.Load(); c != nil && err == nil {
		c.appended = true
	}
	if logCommitFault != nil {
		logCommitFault("after-append")
	}
	took := time.Since(start)
	if !slow.Stop() {
		w.g.cfg.Logger.Warn("ingest log commit was slow", "events", n, "took", took.Round(time.Millisecond))
	}
	logSyncSeconds.Observe(took.Seconds())
	if err != nil {
		w.g.logErrors.Add(uint64(n))
		w.g.cfg.Logger.Error("ingest log write failed; the events were refused", "events", n, "error", err)
	}
	if !clustered || err != nil {
		w.complete(gen, groups, batches, err)
		w.cur.Store(nil)
		return
	}
	// Clustered: the partitions apply the entries once the replicas have
	// them too (C5); commits complete in order.
	repl := w.g.cl.link.Replicate(groups)
	w.cur.Store(nil)
	w.completions <- completion{gen: gen, groups: groups, batches: batches, repl: repl}
}

// ErrAfterFailedCommit: a group commit came after a failed one of the
// same partition, which applies nothing more until served again; its
// events were refused (their publishers resend).
var ErrAfterFailedCommit = errors.New("actors: an earlier commit of the partition failed; events refused until it is served again")

// slowCommit is how long an ingest log commit may take before the gateway
// logs it (one fsync is about 0.2 ms on the machines measured).
const slowCommit = time.Second

// completion is a clustered group commit waiting for its replicas.
type completion struct {
	gen     *commitGen
	groups  []state.LogGroup
	batches [][]event
	repl    <-chan error
}

// completer finishes clustered commits in commit order.
func (w *logWriter) completer() {
	defer close(w.completerDone)
	for c := range w.completions {
		err := <-c.repl
		if err == nil && w.g.cl.link.Fenced() {
			// Cut off from the majority: another gateway may serve these
			// partitions by now (C4). Not applied; the publishers resend.
			err = ErrFenced
		}
		if err != nil {
			w.g.cfg.Logger.Warn("group commit not replicated; its events were refused", "error", err)
		}
		w.complete(c.gen, c.groups, c.batches, err)
	}
}

// complete wakes the commit's waiters and, when it succeeded, hands its
// events to their partitions in log order. A commit that failed is not
// applied: the publishers resend, and a partition that serves on replays
// its log from its checkpoint.
func (w *logWriter) complete(gen *commitGen, groups []state.LogGroup, batches [][]event, err error) {
	defer close(gen.sent)
	if w.g.cl != nil {
		for _, g := range groups {
			if err == nil && w.broken[g.Partition].Load() {
				err = ErrAfterFailedCommit
			}
		}
		if err != nil {
			for _, g := range groups {
				w.broken[g.Partition].Store(true)
			}
		}
	}
	gen.err = err
	close(gen.done) // durable: the publishers may be acknowledged (D1)
	if err != nil {
		for i, g := range groups {
			if g.Partition == 0 {
				w.g.failedForwards(batches[i])
			}
		}
		var n int64
		for _, evs := range batches {
			for i := range evs {
				n += eventBytes(&evs[i])
			}
		}
		w.release(n)
		return
	}
	size := w.g.cfg.BatchSize
	for i, g := range groups {
		evs := batches[i]
		if g.Partition == 0 {
			w.g.skipStaleForwards(evs)
		}
		for off := 0; off < len(evs); off += size {
			end := min(off+size, len(evs))
			b := &eventBatch{events: evs[off:end], seq0: g.First + uint64(off), release: w}
			for j := range b.events {
				b.bytes += eventBytes(&b.events[j])
			}
			w.g.send(g.Partition, b)
			if c := w.cur.Load(); c != nil && c.gen == gen {
				c.sent += b.bytes // standalone: on the actor's own goroutine
			}
		}
		if logCommitFault != nil {
			logCommitFault("sent-group")
		}
		if g.Partition == 0 {
			for _, e := range evs {
				if e.forwarded && e.srcSeq > 0 && e.origin == "" && !e.skip {
					if a := &w.g.fwdLogged[e.src]; a.Load() < e.srcSeq {
						a.Store(e.srcSeq)
					}
				}
			}
		}
	}
}

// sync waits until everything queued so far is committed and in its
// partitions' mailboxes, so a message sent after it comes after them.
func (w *logWriter) sync() {
	w.mu.Lock()
	gen, inflight := w.gen, w.inflight
	empty := len(w.touched) == 0
	w.mu.Unlock()
	if inflight != nil {
		<-inflight.sent
	}
	if !empty {
		w.wake()
		<-gen.sent
	}
}
