package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Durable mode (Config.Store set). Invariants, on top of A1-A5 and the
// store's S1-S4 and O1-O2:
//
//	D1: an event is in its partition's ingest log, synced, before Ingest
//	    returns (and so before the MQTT acknowledgement); the partition
//	    applies log entries in log order, ticks included.
//	D2: a partition is deterministic: the same checkpoint and the same
//	    log entries give the same output rows in the same order, so the
//	    n-th row of a partition has the same id in every replay. Jobs run
//	    in name order; forwarded events are logged by partition 0 before
//	    it applies them.
//	D3: partition 0 applies a forwarded event once: it remembers the last
//	    (source partition, source seq, index) it applied, and a source
//	    keeps its log entries until partition 0 has logged what they
//	    forwarded. The index numbers an entry's events in job-name order,
//	    so every replay numbers them alike. A recovery forwards again the
//	    entries between what partition 0 logged and its checkpoint, except
//	    those the first run dropped as resends (the checkpoint lists
//	    them): a resend forwarded at its own position would count twice.
//	    This holds while one gateway at a time serves the source (C8): two
//	    would number different entries alike.
//	D4: a checkpoint is written after the rows it covers are in the
//	    outbox; recovery loads it, replays the log after it and skips the
//	    rows the outbox already holds (exactly once into the outbox).
//	D5: a partition's checkpoint never moves back (the store refuses one
//	    at an earlier log position), and only the gateway serving the
//	    partition writes it; a take-over restores the newer of its
//	    checkpoint and its safe checkpoint.
//	D6: with Config.SequenceField, an event is dropped as a duplicate only
//	    if its device's input had that number (seqwindow.go); numbers too
//	    old to check are taken and counted, never dropped.

// ErrNotReady is returned by Ingest while a durable gateway recovers.
var ErrNotReady = errors.New("actors: gateway is recovering its state")

// ErrFenced refuses events while a clustered gateway does not hear from a
// majority of the cluster.
var ErrFenced = errors.New("actors: cut off from the cluster's majority; events refused")

// ErrOverQuota is returned by Ingest while an output whose policy is
// "reject" is over its disk quota.
var ErrOverQuota = errors.New("actors: an output's outbox is over its quota; input is refused until it drains")

// DefaultMaxQueuedBytes is the default of Config.MaxQueuedBytes.
const DefaultMaxQueuedBytes = 64 << 20

// logWriter is the group commit of the ingest log (D1): Ingest queues an
// event and waits; one goroutine writes everything queued in one synced
// batch, wakes the waiters, then hands the events to their partitions in
// log order.
type logWriter struct {
	g        *Gateway
	interval time.Duration
	mu       sync.Mutex
	pending  [][]event // per partition
	touched  []int
	gen      *commitGen // collecting events
	inflight *commitGen // being committed and sent
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
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
		gen: newCommitGen(), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		completions: make(chan completion, 1024), completerDone: make(chan struct{}), maxQueued: g.cfg.MaxQueuedBytes}
	w.space = sync.NewCond(&w.mu)
	go w.run()
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

// wake tells the committer there is work (coalesced).
func (w *logWriter) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *logWriter) run() {
	defer close(w.done)
	last := time.Now()
	for {
		select {
		case <-w.stop:
			w.commit()
			return
		case <-w.kick:
		}
		if d := w.interval - time.Since(last); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
			}
		}
		last = time.Now()
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
	<-w.done
	close(w.completions)
	<-w.completerDone
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
		return
	}
	// Clustered: the partitions apply the entries once the replicas have
	// them too (C5); commits complete in order.
	w.completions <- completion{gen: gen, groups: groups, batches: batches, repl: w.g.cl.link.Replicate(groups)}
}

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
	gen.err = err
	close(gen.done) // durable: the publishers may be acknowledged (D1)
	if err != nil {
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
		for off := 0; off < len(evs); off += size {
			end := min(off+size, len(evs))
			b := &eventBatch{events: evs[off:end], seq0: g.First + uint64(off), release: w}
			for j := range b.events {
				b.bytes += eventBytes(&b.events[j])
			}
			w.g.send(g.Partition, b)
		}
		if g.Partition == 0 {
			for _, e := range evs {
				if e.forwarded && e.srcSeq > 0 && e.origin == "" {
					if a := &w.g.fwdLogged[e.src]; a.Load() < e.srcSeq {
						a.Store(e.srcSeq)
					}
				}
			}
		}
	}
}

// emit assigns an output row its id (D2) and queues it for the outbox,
// unless the outbox has it from before a crash (D4).
func (p *partition) emit(job, output string, ts int64, rec *value.Record) {
	p.outSeq++
	if p.outSeq <= p.written {
		p.g.replayedRows.Add(1)
		return
	}
	if row, ok := p.g.sink.Encode(job, output, ts, rec, outputID(job, output, ts, p.id, p.outSeq)); ok {
		if p.partNo == nil {
			p.partNo = proto.Uint32(uint32(p.id))
		}
		row.Entry.Partition = p.partNo // shared: entries are not changed once made
		p.outBuf = append(p.outBuf, row)
	}
}

// outputID is a row's deterministic id: FNV-1a of job, output, time
// (the window end for windowed rows), partition and the partition's output
// sequence number, in 16 hex digits.
func outputID(job, output string, ts int64, part int, seq uint64) string {
	h := fnvString(fnvOffset, job)
	h = fnvByte(h, 0)
	h = fnvString(h, output)
	h = fnvUint64(h, uint64(ts))
	h = fnvByte(fnvByte(h, byte(part)), byte(part>>8))
	h = fnvUint64(h, seq)
	var b [16]byte
	putHex16(b[:], h)
	return string(b[:])
}

// outputWritten is the partition's last output seq in the outbox (0
// without one).
func (p *partition) outputWritten() (uint64, error) {
	if p.g.box == nil {
		return 0, nil
	}
	return p.g.box.OutputWritten(p.id)
}

// flushOutbox appends the rows emitted since the last flush to the outbox
// and wakes the drainers.
func (p *partition) flushOutbox() {
	// outSeq is below written while a replay produces rows the outbox
	// holds already (emit skips them): written must not go back, or the
	// rest of the replay would add them again (D4).
	if p.g.box == nil || p.outSeq <= p.written {
		return
	}
	if len(p.outBuf) > 0 {
		if err := p.g.box.AppendOutputs(p.id, p.outSeq, p.outBuf); err != nil {
			// The rows stay produced by the log: a restart replays them.
			p.g.cfg.Logger.Error("outbox write failed", "partition", p.id, "rows", len(p.outBuf), "error", err)
			p.g.outboxErrors.Add(1)
			return
		}
		p.g.sink.Notify()
	}
	p.outBuf = p.outBuf[:0]
	p.written = p.outSeq
}

// checkpoint writes the partition's state (D4). Without force it skips a
// partition that has applied nothing but ticks for less than a minute.
func (p *partition) checkpoint(force bool) error {
	if p.g.store == nil || !p.g.ready.Load() || !p.active {
		return nil
	}
	if !force && p.sinceCp == 0 && time.Since(p.cpTime) < time.Minute {
		return nil
	}
	start := time.Now()
	if p.id != 0 && len(p.forwardJobs) > 0 {
		// A marker lets partition 0's position pass entries that forwarded
		// nothing, so this log can be truncated (D3).
		p.forwardBuf = append(p.forwardBuf, event{forwarded: true, mark: true, src: p.id, srcSeq: p.applied, srcIdx: math.MaxUint32})
	}
	p.flushOutbox()
	p.flushForward()
	if p.outSeq != p.written {
		return fmt.Errorf("partition %d: outbox behind; checkpoint skipped", p.id)
	}
	cp := &pb.Checkpoint{LogPosition: p.applied, OutputSeq: p.outSeq, Jobs: map[string][]byte{}}
	for _, name := range p.order {
		snap, err := p.execs[name].Snapshot()
		if err != nil {
			return fmt.Errorf("partition %d job %q: snapshot: %w", p.id, name, err)
		}
		cp.Jobs[name] = snap
	}
	ids := make([]string, 0, len(p.devices))
	for id := range p.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := p.devices[id]
		ds := &pb.DeviceState{Id: id, LastSeen: d.lastSeen, Online: d.online, Messages: d.messages, Reported: d.reported, Sequences: d.seqs,
			TwinReported: d.twinReported, ReportedVersion: d.reportedVersion}
		for key, w := range d.seqWin {
			if ds.SequenceWindows == nil {
				ds.SequenceWindows = map[string][]byte{}
			}
			ds.SequenceWindows[key] = w.bytes()
		}
		cp.Devices = append(cp.Devices, ds)
	}
	if len(p.desired) > 0 {
		cp.Desired = p.desired
	}
	if len(p.desiredVersion) > 0 {
		cp.DesiredVersions = p.desiredVersion
	}
	if len(p.origins) > 0 {
		cp.Origins = p.origins
	}
	if p.id != 0 {
		p.pruneUnforwarded(p.g.fwdLogged[p.id].Load())
		cp.Unforwarded = slices.Clone(p.unforwarded)
	}
	if len(p.fwdApplied) > 0 {
		cp.Forwarded, cp.ForwardedIndex = map[uint32]uint64{}, map[uint32]uint32{}
		for src, pos := range p.fwdApplied {
			cp.Forwarded[uint32(src)], cp.ForwardedIndex[uint32(src)] = pos.seq, pos.idx
		}
	}
	through := p.applied
	if p.id != 0 && len(p.forwardJobs) > 0 {
		through = min(through, p.g.fwdLogged[p.id].Load())
	}
	if err := p.g.store.SaveCheckpointTruncate(p.id, cp, p.g.localThrough(p.id, through)); err != nil {
		return err
	}
	if p.g.cl != nil {
		// cp holds the partition's maps: copies, as the partition goes on.
		cp = proto.Clone(cp).(*pb.Checkpoint)
		p.lastCp, p.lastThrough = cp, through
		p.g.offerSafe(p.id, cp, through)
	}
	p.sinceCp, p.cpTime = 0, time.Now()
	checkpointSeconds.Observe(time.Since(start).Seconds())
	p.g.checkpoints.Add(1)
	return nil
}

// newestCheckpoint makes sure a take-over never restores a copy older than
// the safe checkpoint the serving gateway made (issue 11 C): the store
// writes both at once when a replica applies a safe checkpoint, so a
// checkpoint behind it was overwritten by something that should not have
// written it. The safe one is used then, and the fault is reported.
func (p *partition) newestCheckpoint(cp *pb.Checkpoint) (*pb.Checkpoint, error) {
	sc, err := p.g.store.LoadSafeCheckpoint(p.id)
	if err != nil || sc.GetCheckpoint() == nil {
		return cp, err
	}
	safe := sc.GetCheckpoint()
	if cp != nil && cp.LogPosition >= safe.LogPosition {
		return cp, nil
	}
	p.g.staleCheckpoints.Add(1)
	p.g.cfg.Logger.Error("partition's checkpoint is older than its safe checkpoint; restoring the safe one",
		"partition", p.id, "checkpoint_position", cp.GetLogPosition(), "safe_position", safe.LogPosition, "safe_epoch", sc.Epoch)
	return proto.Clone(safe).(*pb.Checkpoint), nil
}

// recover loads the partition's checkpoint and replays its log (D4).
// Partition 0 recovers before the others, so the positions it applied
// forwarded events to are known (D3).
func (p *partition) recover() error {
	st := p.g.store
	cp, err := st.LoadCheckpoint(p.id)
	if errors.Is(err, state.ErrCorrupt) && p.g.cfg.ResetDamaged {
		p.g.damagedReset.Add(1)
		p.g.cfg.Logger.Error("checkpoint damaged; the partition starts without it (its open windows are lost) and replays what is left of its log",
			"partition", p.id, "error", err)
		cp = nil
	} else if err != nil {
		return err
	}
	if p.g.cl != nil {
		if cp, err = p.newestCheckpoint(cp); err != nil {
			return err
		}
	}
	if p.written, err = p.outputWritten(); err != nil {
		return err
	}
	if cp == nil {
		// Row ids continue after those already in the outbox.
		p.outSeq = p.written
	} else {
		p.applied, p.outSeq = cp.LogPosition, cp.OutputSeq
		for name, snap := range cp.Jobs {
			ex := p.execs[name]
			if ex == nil {
				p.g.cfg.Logger.Warn("checkpoint holds state of a job that is not deployed; ignored", "partition", p.id, "job", name)
				continue
			}
			if err := ex.Restore(snap); err != nil {
				// The job was changed while the gateway was down.
				p.g.restoreFailures.Add(1)
				p.g.cfg.Logger.Warn("job state does not match the deployed job; the job starts empty", "partition", p.id, "job", name, "error", err)
				fresh, ferr := p.jobs[name].newExecutor(p.g, p)
				if ferr != nil {
					return ferr
				}
				p.execs[name] = fresh
			}
		}
		for _, d := range cp.Devices {
			ds := &deviceState{lastSeen: d.LastSeen, online: d.Online, messages: d.Messages, reported: d.Reported, seqs: d.Sequences,
				twinReported: d.TwinReported, reportedVersion: d.ReportedVersion}
			for key, b := range d.SequenceWindows {
				if w := seqWindowOf(b); w != nil {
					if ds.seqWin == nil {
						ds.seqWin = map[string]*seqWindow{}
					}
					ds.seqWin[key] = w
				}
			}
			p.devices[d.Id] = ds
		}
		for id, des := range cp.Desired {
			p.desired[id] = des
		}
		for id, v := range cp.DesiredVersions {
			p.desiredVersion[id] = v
		}
		for o, seq := range cp.Origins {
			p.origins[o] = seq
		}
		for src, seq := range cp.Forwarded {
			p.fwdApplied[int(src)] = fwdPos{seq, cp.ForwardedIndex[src]}
		}
		p.unforwarded = slices.Clone(cp.Unforwarded)
	}
	// Entries at or before the checkpoint are replayed only to forward
	// what partition 0 has not logged (D3), as the first run did: not
	// the resends it dropped (the checkpoint lists them).
	own := p.applied
	from := own
	if p.id != 0 && len(p.forwardJobs) > 0 {
		from = min(from, p.g.fwdLogged[p.id].Load())
	}
	replayed := 0
	defer p.notePanic()
	guard := p.startReplayGuard(own)
	err = st.ReadLog(p.id, from, func(seq uint64, le *pb.LogEntry) error {
		e := eventOf(le)
		if p.g.poisoned(p.id, seq, e) {
			p.setApplied(max(seq, own))
			return nil
		}
		if seq <= own {
			if !e.tick && !e.forwarded && p.forwardedFirst(seq) {
				p.setApplied(seq)
				p.forward(e)
			}
			p.setApplied(own)
		} else {
			p.setApplied(seq)
			guard.before(seq)
			p.apply(e)
			guard.after(seq)
			replayed++
		}
		if len(p.outBuf) >= 256 || len(p.forwardBuf) >= 256 {
			p.flushOutbox()
			p.flushForward()
		}
		return nil
	})
	p.flushOutbox()
	p.flushForward()
	if errors.Is(err, state.ErrCorrupt) && p.g.cfg.ResetDamaged {
		p.g.damagedReset.Add(1)
		p.g.cfg.Logger.Error("ingest log damaged; what is left of it after the last good entry is dropped", "partition", p.id,
			"replayed", replayed, "error", err)
		if derr := st.DropLog(p.id); derr != nil {
			return derr
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("partition %d: replay: %w", p.id, err)
	}
	if p.outSeq < p.written {
		// The replay made fewer rows than the outbox holds (a job changed
		// while the gateway was down, or an entry was poisoned): the next
		// rows are numbered after the outbox's, so none is skipped as one
		// already there.
		p.g.cfg.Logger.Warn("replay produced fewer rows than the outbox holds; numbering goes on after them",
			"partition", p.id, "replayed_up_to", p.outSeq, "outbox_up_to", p.written)
		p.outSeq = p.written
	}
	if p.id == 0 {
		for src, pos := range p.fwdApplied {
			p.g.fwdLogged[src].Store(pos.seq)
		}
	}
	guard.done()
	p.g.replayedEntries.Add(uint64(replayed))
	return nil
}

// Recover restores every partition from the store: checkpoints, then the
// log after them. Call it once after deploying the jobs the gateway ran
// before (see RecoverJobs); Ingest refuses events until it returns.
func (g *Gateway) Recover(ctx context.Context) error {
	if g.store == nil {
		g.ready.Store(true)
		return nil
	}
	if g.cl != nil {
		// Clustered: a partition recovers when the gateway starts serving
		// it (Serve).
		g.ready.Store(true)
		return nil
	}
	start := time.Now()
	// Replay makes garbage fast on a small heap: collect less often
	// meanwhile (GOMEMLIMIT still bounds the heap).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	recoverOne := func(i int) error {
		res, err := g.system.Root.RequestFuture(g.parts[i], &recoverMsg{}, timeoutOf(ctx)).Result()
		if err == nil {
			err = res.(*doneReply).err
		}
		return err
	}
	if err := recoverOne(0); err != nil {
		return fmt.Errorf("actors: recover: %w", err)
	}
	// A partition whose replays ended the process recovers alone: if the
	// process ends again, the entry it was applying is the cause, not
	// another partition's (replayguard.go).
	var rest []int
	for i := 1; i < len(g.parts); i++ {
		if !g.replaySuspect(i) {
			rest = append(rest, i)
			continue
		}
		if err := recoverOne(i); err != nil {
			return fmt.Errorf("actors: recover: %w", err)
		}
	}
	futures := make([]error, len(g.parts))
	var wg sync.WaitGroup
	for _, i := range rest {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			futures[i] = recoverOne(i)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(futures...); err != nil {
		return fmt.Errorf("actors: recover: %w", err)
	}
	// Partition 0 applies what the others forwarded during their replay.
	if err := g.Drain(ctx); err != nil {
		return err
	}
	g.ready.Store(true)
	g.cfg.Logger.Info("state recovered", "log_entries_replayed", g.replayedEntries.Load(), "rows_already_in_outbox", g.replayedRows.Load(),
		"took", time.Since(start).Round(time.Millisecond))
	return g.Checkpoint(ctx)
}

// Checkpoint makes every partition write a checkpoint now.
func (g *Gateway) Checkpoint(ctx context.Context) error {
	if g.store == nil {
		return nil
	}
	var errs []error
	for _, pid := range g.parts {
		res, err := g.system.Root.RequestFuture(pid, &checkpointMsg{force: true}, timeoutOf(ctx)).Result()
		if err == nil {
			err = res.(*doneReply).err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DurableStats are the counters of durable mode.
type DurableStats struct {
	Checkpoints, ReplayedEntries, ReplayedRows, Duplicates, RestoreFailures, LogErrors, OutboxErrors, RefusedOverQuota, SkippedPoison, DamagedReset uint64
	// ForwardResends: events another gateway forwarded again (after a
	// lost answer or a fail-over) that the partition had applied (C7).
	ForwardResends uint64
	// SequenceUnverified: events taken although their sequence number was
	// too far below their device's highest to check (maybe resends).
	SequenceUnverified uint64
	// StaleCheckpoints: take-overs that found the partition's checkpoint
	// older than its safe checkpoint and restored the safe one.
	StaleCheckpoints uint64
	// ReplayDeaths: replays of a partition that the previous process
	// ended in (replayguard.go).
	ReplayDeaths uint64
	// IngestWaits: device messages that waited for the log writer's
	// back-pressure (Config.MaxQueuedBytes).
	IngestWaits uint64
}

// DurableStats returns the durable-mode counters.
func (g *Gateway) DurableStats() DurableStats {
	return DurableStats{Checkpoints: g.checkpoints.Load(), ReplayedEntries: g.replayedEntries.Load(), ReplayedRows: g.replayedRows.Load(),
		Duplicates: g.duplicates.Load(), RestoreFailures: g.restoreFailures.Load(), LogErrors: g.logErrors.Load(),
		OutboxErrors: g.outboxErrors.Load(), RefusedOverQuota: g.refused.Load(), SkippedPoison: g.skippedPoison.Load(), DamagedReset: g.damagedReset.Load(),
		ForwardResends: g.forwardResends.Load(), SequenceUnverified: g.seqUnverified.Load(),
		StaleCheckpoints: g.staleCheckpoints.Load(), ReplayDeaths: g.replayDeaths.Load(), IngestWaits: g.ingestWaits.Load()}
}

var (
	logSyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "millstream_ingest_log_commit_seconds",
		Help:    "Time one group commit of the ingest log takes (write and fsync).",
		Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
	})
	checkpointSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "millstream_checkpoint_seconds",
		Help:    "Time a partition spends writing one checkpoint (it processes no events meanwhile).",
		Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
	})
	ingestWaitSeconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "millstream_ingest_backpressure_seconds_total",
		Help: "Time device input spent waiting because the input taken and not yet applied was over max_queued_bytes (the broker stops reading the connection meanwhile).",
	})
)

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

// poisonLimit is how many times a log entry may crash its partition before
// recovery skips it: a deterministic failure would otherwise crash the
// partition on every replay.
const poisonLimit = 3

// notePanic, deferred while a partition applies log entries, records the
// entry that was being applied when it panicked, then lets the panic go
// on to the supervisor.
func (p *partition) notePanic() {
	if r := recover(); r != nil {
		p.g.notePoison(p.id, p.applied, fmt.Sprint(r), 1)
		panic(r)
	}
}

// notePoison counts crashes more of log entry seq of partition part, with
// the reason of the last.
func (g *Gateway) notePoison(part int, seq uint64, reason string, crashes int) {
	g.poisonMu.Lock()
	if g.poison == nil {
		g.poison = map[[2]uint64]*poisonEntry{}
	}
	k := [2]uint64{uint64(part), seq}
	pe := g.poison[k]
	if pe == nil {
		pe = &poisonEntry{}
		g.poison[k] = pe
	}
	pe.crashes += crashes
	pe.reason = reason
	pe.fatal = crashes >= poisonLimit
	g.poisonMu.Unlock()
	g.panics.Add(1)
}

// poisoned reports (and counts) a log entry that crashed its partition
// poisonLimit times: it is skipped.
// It is dead-lettered once (kind poison, with the panic and the event).
func (g *Gateway) poisoned(part int, seq uint64, e event) bool {
	if g.panics.Load() == 0 {
		return false // the usual case: no lock on the per-event path
	}
	g.poisonMu.Lock()
	pe := g.poison[[2]uint64{uint64(part), seq}]
	if pe == nil || pe.crashes < poisonLimit {
		g.poisonMu.Unlock()
		return false
	}
	first := !pe.skipped
	pe.skipped = true
	reason := fmt.Sprintf("crashed its partition %d times: %s", poisonLimit, pe.reason)
	if pe.fatal {
		reason = pe.reason
	}
	g.poisonMu.Unlock()
	if first {
		g.skippedPoison.Add(1)
		g.cfg.Logger.Error("log entry skipped and dead-lettered as poison", "partition", part, "seq", seq, "reason", reason)
		g.dead1.Add(1)
		if g.dead != nil {
			payload := e.payload
			if payload == nil && e.rec != nil {
				payload = value.AppendRecordJSON(nil, e.rec)
			}
			g.dead.DeadLetter(Rejected{Job: e.job, Partition: part, Pos: seq, Source: e.device, DeadLetter: exec.DeadLetter{Input: e.input,
				Kind: DeadLetterPoison, Reason: reason, Payload: payload}})
		}
	}
	return true
}

// poisonEntry is what the gateway knows of a log entry that crashed its
// partition.
type poisonEntry struct {
	crashes int
	reason  string // the last panic
	fatal   bool   // it ended the process (replayguard.go)
	skipped bool
}
