package actors

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Messages to partition actors.
type (
	event struct {
		job     string // empty: every job that reads input
		input   string
		device  string
		payload []byte
		rec     *value.Record // instead of payload: a decoded Devices event
		arrival int64
		// forwarded: sent on by the device's partition to partition 0 for
		// a job that runs there only (A4); the device was seen already.
		forwarded bool
		// tick: a clock tick (durable mode logs ticks so a replay closes
		// windows at the same points and reproduces the same output ids).
		tick bool
		// Durable forwarding: the source partition and its log position,
		// so partition 0 applies a forwarded event once (D3). mark: no
		// event, only the position.
		src    int
		srcSeq uint64
		srcIdx uint32
		mark   bool
		// fwdGen: the source's forward generation; skip: partition 0
		// does not apply this local forward, a redo replaces it
		// (fwdredo.go).
		fwdGen uint32
		skip   bool
		// Clustered: forwarded by another gateway (C7).
		origin string
		oseq   uint64
		// targets: the job inputs of a message several read (job and
		// input empty); logged and counted once.
		targets []routeTarget
		// meta: the MQTT message's metadata, only when a job reading
		// the input reads it (routeTarget.meta); logged with the event.
		meta *pb.EventMetadata
	}
	// eventBatch is a run of events; with seq0 > 0, events[i] is log
	// entry seq0+i of the partition.
	eventBatch struct {
		events []event
		seq0   uint64
		// release, when set, gets bytes back once the batch is applied
		// (the log writer's back-pressure).
		release *logWriter
		bytes   int64
	}
	deployMsg     struct{ job *deployedJob }
	removeMsg     struct{ name string }
	tickMsg       struct{ now int64 }
	drainMsg      struct{}
	flushMsg      struct{}
	checkpointMsg struct{ force bool }
	recoverMsg    struct{}
	doneReply     struct{ err error }
)

// fwdPos orders forwarded events of one source partition.
type fwdPos struct {
	seq uint64
	idx uint32
}

func (a fwdPos) less(b fwdPos) bool { return a.seq < b.seq || a.seq == b.seq && a.idx < b.idx }

// partition hosts the executors of one partition (A1).
type partition struct {
	g  *Gateway
	id int
	// ctx is the partition actor's context, which spawns and stops its
	// job actors (jobactor.go).
	ctx actor.Context
	// runs are the job actors of the jobs that run here, by job name;
	// order lists them by name: a replay queues their work, and so
	// numbers their rows, in the same order (D2).
	runs  map[string]*jobRun
	order []*jobRun
	jobs  map[string]*deployedJob
	// The current round of job work (jobactor.go): what each step was
	// applied for, and where the jobs answer.
	steps   []stepInfo
	pending []*jobRun // syncJobs' jobs still to answer
	replies chan jobDone
	// scratch: this partition only rebuilds a job (jobrestart.go); it
	// counts, emits and dead-letters nothing.
	scratch bool
	// devices are the liveness entries of active devices; the rest of a
	// device is its actor's (deviceactor.go): deviceActors are the
	// activated ones, dormant the state of the others. toSummarize lists
	// the devices with a summary waiting for their actor.
	devices      map[string]*deviceEntry
	deviceActors map[string]*actor.PID
	dormant      map[string]*deviceRecord
	toSummarize  []string
	summarized   int64 // arrival time summaries were last sent (in memory)
	// forwardJobs are the jobs that run on partition 0 only (A4); a
	// partition other than 0 sends them the events it receives, in order.
	forwardJobs []*deployedJob
	forwardBuf  []event

	// Durable state (D1-D4).
	applied uint64 // last log entry applied
	fwdIdx  uint32 // forwarded events produced by entry applied so far
	fwdGen  uint32 // forward generation (fwdredo.go)
	dlPos   uint64 // the log entry of the last dead letter
	// panicAt, while the rows of a round are emitted, is the log entry
	// that made the row being emitted: a panic is that entry's (poison).
	panicAt    uint64
	dlIdx      uint32 // dead letters of entry dlPos so far
	budgetAt   int64  // event time of the last memory budget check
	curDevice  string // device of the event being applied (dead letters)
	sinceCp    int    // entries other than ticks applied since the last checkpoint
	cpTime     time.Time
	outSeq     uint64 // output rows emitted (the sequence in output ids)
	written    uint64 // last outSeq in the outbox (O2)
	outBuf     []state.OutRow
	partNo     *uint32          // p.id, for the rows' Partition field
	fwdApplied map[int]fwdPos   // partition 0: last forwarded event applied per source
	fwdDrops   map[int]*fwdDrop // partition 0: forwards dropped as applied, since last logged (debug)
	// unforwarded: positions of entries applied without forwarding (resends
	// dropped), after what partition 0 has logged, ascending (D3).
	unforwarded []uint64
	seqDecoder  value.Decoder // reads Config.SequenceField

	// Clustered mode (cluster.go).
	active      bool              // this gateway serves the partition
	origins     map[string]uint64 // last origin seq applied per forwarding gateway (C7)
	lastCp      *pb.Checkpoint    // the last checkpoint written, and its truncation point
	lastThrough uint64
}

func (p *partition) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.ctx = ctx
		first := p.g.started[p.id].CompareAndSwap(false, true)
		if !first {
			p.g.restarts.Add(1)
			if p.g.store == nil {
				p.g.cfg.Logger.Error("partition restarted after a failure; its window state was lost (no durable state)", "partition", p.id)
			}
		}
		if f := p.g.cfg.SequenceField; f != "" {
			p.seqDecoder = value.Decoder{Fields: []string{f}}
		}
		p.reset()
		if first {
			// A clustered gateway serves a partition only from Serve on
			// (SetCluster comes after New; issue 11 C).
			p.active = !p.g.cfg.Clustered
		} else {
			p.active = p.g.cl == nil || p.g.Serving(p.id)
		}
		if p.g.store != nil && p.g.ready.Load() && p.active {
			// Durable: the state comes back from the checkpoint and the log.
			if err := p.recover(); err != nil {
				p.g.cfg.Logger.Error("partition could not recover its state after a restart", "partition", p.id, "error", err)
			} else {
				p.g.cfg.Logger.Info("partition recovered its state after a restart", "partition", p.id)
			}
		}
	case *actor.Restarting, *actor.Stopping:
		// Its children, the device actors among them, stop with it.
		p.g.deviceActorsLive.Add(-int64(len(p.deviceActors)))
		p.deviceActors = nil
	case *eventBatch:
		start := time.Now()
		defer func() {
			batchSeconds.Observe(time.Since(start).Seconds())
			p.g.queued[p.id].Add(-1)
			if m.release != nil {
				m.release.release(m.bytes)
			}
		}()
		if !p.active {
			// Cannot happen: Release syncs the log before it stops the
			// partition, and nothing is queued for a partition not served.
			p.g.cfg.Logger.Error("events for a partition this gateway does not serve; dropped", "partition", p.id, "events", len(m.events))
			return
		}
		if m.seq0 > 0 {
			defer p.notePanic()
		}
		ticked := false
		for i, e := range m.events {
			ticked = ticked || e.tick
			if m.seq0 > 0 {
				seq := m.seq0 + uint64(i)
				if seq <= p.applied {
					continue // replayed already after a restart
				}
				p.setApplied(seq)
				if e.skip || p.g.poisoned(p.id, seq, e) {
					continue
				}
			}
			p.apply(e)
		}
		p.syncJobs(false)
		p.flushOutbox()
		p.flushForward()
		if len(p.fwdDrops) > 0 {
			p.logFwdDrops("applying")
		}
		if ticked {
			p.noteQuiet() // recomputed from the state the events left
		} else if len(m.events) > 0 {
			p.awake()
		}
	case *deployMsg:
		ctx.Respond(&doneReply{err: p.deploy(m.job)})
	case *stopJobMsg:
		if p.jobs[m.d.job.Name] == m.d {
			p.dropJob(m.d.job.Name)
		}
	case *removeMsg:
		p.dropJob(m.name)
		ctx.Respond(&doneReply{})
	case *tickMsg:
		p.tick(m.now)
		p.syncJobs(false)
		p.flushOutbox()
		p.flushForward()
		p.noteQuiet()
	case *checkpointMsg:
		err := p.checkpoint(m.force)
		if ctx.Sender() != nil {
			ctx.Respond(&doneReply{err: err})
		} else if err != nil {
			// The periodic checkpoint is sent, not requested: nobody waits.
			p.g.cfg.Logger.Error("checkpoint failed; the log is kept until one succeeds", "partition", p.id, "error", err)
		}
	case *recoverMsg:
		ctx.Respond(&doneReply{err: p.recover()})
	case *redoForwardsMsg:
		p.redoForwards()
	case *serveMsg:
		p.reset()
		err := p.recover()
		p.active = err == nil
		if err == nil {
			p.sinceCp = 1 // a checkpoint soon: the first safe one (C6)
		}
		ctx.Respond(&doneReply{err: err})
	case *releaseMsg:
		r := &releaseReply{}
		if p.active {
			if r.err = p.checkpoint(true); r.err == nil && p.lastCp != nil {
				r.sc = &pb.SafeCheckpoint{Checkpoint: p.lastCp, Through: p.lastThrough, Epoch: p.g.Epoch(p.id)}
				r.hw = p.g.store.OutboxHighWater()
			}
		}
		p.reset()
		p.active = false
		ctx.Respond(r)
	case *devicesMsg:
		if m.id != "" {
			p.readDevice(ctx, m.id, false)
			return
		}
		r, err := p.listDevices(m.after, m.limit)
		if err != nil {
			ctx.Respond(err)
			return
		}
		ctx.Respond(r)
	case *twinMsg:
		p.readDevice(ctx, m.id, true)
	case *methodMsg:
		p.methodCall(ctx, m)
	case *methodAnswerMsg:
		p.methodAnswer(m)
	case *drainMsg:
		ctx.Respond(&doneReply{})
	case *countersMsg:
		r := &countersReply{byJob: map[string]exec.Counters{}, watermark: map[string]int64{}, stages: map[string]map[string]time.Duration{}}
		byRun := make([]struct {
			c      exec.Counters
			stages map[string]time.Duration
			wm     int64
			ok     bool
		}, len(p.order))
		p.callJobs(func(i int, ex *exec.Executor) error {
			c := &byRun[i]
			c.c, c.stages = ex.Counters(), ex.StageTimes()
			c.wm, c.ok = ex.Watermark()
			return nil
		})
		for i, run := range p.order {
			r.byJob[run.name()], r.stages[run.name()] = byRun[i].c, byRun[i].stages
			if byRun[i].ok {
				r.watermark[run.name()] = byRun[i].wm
			}
		}
		ctx.Respond(r)
	case *flushMsg:
		p.queueAll(opFlush, 0)
		p.syncJobs(false)
		p.flushOutbox()
		// A flush is not in the log: a checkpoint now keeps a replay (a
		// restart, a job rebuilt) from opening the windows it closed.
		if err := p.checkpoint(true); err != nil {
			p.g.cfg.Logger.Error("checkpoint after flushing the windows failed", "partition", p.id, "error", err)
		}
		ctx.Respond(&doneReply{})
	}
}

// reset drops the partition's state: its executors start empty with the
// gateway's jobs.
func (p *partition) reset() {
	p.awake()
	for _, r := range p.order {
		p.stopJob(r)
	}
	p.runs = map[string]*jobRun{}
	p.order, p.steps = nil, p.steps[:0]
	p.jobs = map[string]*deployedJob{}
	p.stopDeviceActors()
	p.devices = map[string]*deviceEntry{}
	p.fwdApplied = map[int]fwdPos{}
	p.origins = map[string]uint64{}
	p.forwardJobs, p.forwardBuf, p.outBuf, p.unforwarded = nil, nil, nil, nil
	p.applied, p.fwdIdx, p.sinceCp, p.outSeq, p.written = 0, 0, 0, 0, 0
	p.dlPos, p.dlIdx = 0, 0
	p.lastCp, p.lastThrough = nil, 0
	p.cpTime = time.Now()
	if p.g.store == nil {
		// In memory: row ids go on after those of the outbox (a restart
		// after a failure) and never repeat an earlier process's.
		p.written, _ = p.outputWritten()
		p.outSeq = p.written
	}
	p.g.mu.Lock()
	jobs := make([]*deployedJob, 0, len(p.g.jobs))
	for _, d := range p.g.jobs {
		jobs = append(jobs, d)
	}
	p.g.mu.Unlock()
	for _, d := range jobs {
		if err := p.deploy(d); err != nil {
			p.g.cfg.Logger.Error("job does not start on the partition", "partition", p.id, "job", d.job.Name, "error", err)
		}
	}
}

func (p *partition) setApplied(seq uint64) {
	if seq != p.applied {
		p.applied, p.fwdIdx = seq, 0
	}
}

// apply runs one event (or tick) through the partition's jobs.
func (p *partition) apply(e event) {
	if e.tick {
		p.tick(e.arrival)
		return
	}
	if e.forwarded && e.srcSeq > 0 {
		pos := fwdPos{e.srcSeq, e.srcIdx}
		if !p.fwdApplied[e.src].less(pos) {
			p.noteFwdDrop(e.src, e.srcSeq)
			return // applied before the crash; the source replayed it (D3)
		}
		p.fwdApplied[e.src] = pos
		if e.mark {
			return
		}
	}
	if e.origin != "" {
		if e.oseq <= p.origins[e.origin] {
			if p.g.debugForwards {
				p.g.cfg.Logger.Debug("forwarded resend dropped by its origin sequence", "partition", p.id, "device", e.device,
					"origin", e.origin, "origin_seq", e.oseq, "applied_origin_seq", p.origins[e.origin], "position", p.applied)
			}
			p.notForwarded(e)
			if !p.scratch {
				p.g.forwardResends.Add(1)
			}
			return // a resend the partition applied already (C7)
		}
		p.origins[e.origin] = e.oseq
	}
	p.sinceCp++
	p.curDevice = e.device
	if !p.scratch {
		p.g.killIfFault(e.payload)
	}
	if e.input == twinReportedInput || e.input == twinDesiredInput {
		p.applyTwinWrite(e) // a device's twin, not input of any job
		return
	}
	if !e.forwarded {
		if p.duplicate(e) {
			p.notForwarded(e)
			return
		}
		p.seen(e.device, e.payload, e.arrival)
	}
	switch {
	case len(e.targets) > 0:
		for _, t := range e.targets {
			if r := p.runs[t.job]; r != nil && r.ex.Reads(t.input) {
				te := e
				te.job, te.input, te.targets = t.job, t.input, nil
				p.queueIngest(r, te)
			}
		}
	case e.job != "":
		if r := p.runs[e.job]; r != nil && r.ex.Reads(e.input) {
			p.queueIngest(r, e)
		}
	default:
		for _, r := range p.order {
			if r.ex.Reads(e.input) {
				p.queueIngest(r, e)
			}
		}
	}
	p.forward(e)
}

// notForwarded records that the entry being applied, a resend, forwards
// nothing to partition 0. A recovery forwards the entries up to its
// checkpoint again without applying them (D3), so it must know which the
// first run dropped: forwarded again, the resend would be a second event
// at another position, which partition 0 applies too (the churn finding's
// repeated readings).
func (p *partition) notForwarded(e event) {
	if p.id == 0 || e.forwarded || p.g.log == nil || len(p.forwardJobs) == 0 {
		return
	}
	if n := len(p.unforwarded); n == 0 || p.unforwarded[n-1] < p.applied {
		p.unforwarded = append(p.unforwarded, p.applied)
	}
}

// forwardedFirst reports whether the first run forwarded entry seq's
// events (it did unless it dropped the entry as a resend).
func (p *partition) forwardedFirst(seq uint64) bool {
	_, dropped := slices.BinarySearch(p.unforwarded, seq)
	return !dropped
}

// pruneUnforwarded forgets the dropped entries partition 0 has logged
// past: a recovery that forwards them again is dropped there by position.
func (p *partition) pruneUnforwarded(logged uint64) {
	i, _ := slices.BinarySearch(p.unforwarded, logged+1)
	p.unforwarded = p.unforwarded[i:]
}

func (p *partition) tick(now int64) {
	p.sweep(now)
	if p.g.store == nil && !p.scratch && now-p.summarized >= int64(summaryInterval/100) {
		// Durable, the checkpoint's request for their state brings them;
		// every read brings its device's first.
		p.sendSummaries()
		p.summarized = now
	}
	p.queueAll(opAdvance, now)
	p.checkBudgets(now)
}

// duplicate reports (and counts) an event whose sequence number the
// device's input has had already: an MQTT QoS 1 resend of a message the
// gateway had logged. A number too far below the highest to be checked is
// taken and counted as unverified, never dropped.
func (p *partition) duplicate(e event) bool {
	if p.g.cfg.SequenceField == "" || e.device == "" || e.payload == nil {
		return false
	}
	rec, err := p.seqDecoder.Decode(e.payload)
	if err != nil {
		return false // the executor dead-letters it
	}
	v, ok := rec.Get(p.g.cfg.SequenceField)
	if !ok || !v.IsNumeric() {
		return false
	}
	f, _ := v.AsFloat()
	seq := uint64(max(f, 0))
	d := p.entry(e.device)
	key := e.job + "/" + e.input
	last, seen := d.seqs[key]
	verdict, highest, w := seqAccept(seq, last, seen, d.seqWin[key])
	switch verdict {
	case seqDuplicate:
		if !p.scratch {
			p.g.duplicates.Add(1)
			p.note(d, e.device, deviceSummary{duplicates: 1})
		}
		if p.g.debugForwards {
			p.g.cfg.Logger.Debug("resend dropped by its sequence number", "partition", p.id, "device", e.device,
				"seq", seq, "highest", last, "position", p.applied, "origin", e.origin)
		}
		return true
	case seqUnverified:
		if !p.scratch {
			p.g.seqUnverified.Add(1)
		}
		return false
	}
	if d.seqs == nil {
		d.seqs = map[string]uint64{}
	}
	d.seqs[key] = highest
	switch {
	case w != nil:
		if d.seqWin == nil {
			d.seqWin = map[string]*seqWindow{}
		}
		d.seqWin[key] = w
	case d.seqWin != nil:
		delete(d.seqWin, key)
	}
	return false
}

func (p *partition) deploy(d *deployedJob) error {
	p.stopJob(p.runs[d.job.Name])
	delete(p.runs, d.job.Name)
	p.jobs[d.job.Name] = d
	p.updateForwardJobs()
	defer p.sortJobs()
	if !d.partitioned && p.id != 0 {
		return nil // runs on partition 0 only (A4)
	}
	r, err := p.startJob(d)
	if err != nil {
		return err
	}
	r.deployedAt = p.applied
	p.runs[d.job.Name] = r
	return nil
}

func (p *partition) sortJobs() {
	p.order = p.order[:0]
	for _, r := range p.runs {
		p.order = append(p.order, r)
	}
	sort.Slice(p.order, func(i, j int) bool { return p.order[i].name() < p.order[j].name() })
}

// source is the partition an event of a job comes from when the job runs
// on partition 0 only (A4): its executor takes the lowest watermark of the
// partitions feeding it (A6). -1 for a job that runs on every partition.
func (p *partition) source(r *jobRun, e event) int {
	if p.id != 0 || r.d.partitioned {
		return -1
	}
	if e.forwarded {
		return e.src
	}
	return p.id
}

// execMeta is an event's metadata for an executor: its device (the
// topic's, IoTHub.ConnectionDeviceId), the logged MQTT properties and the
// arrival time (EventEnqueuedUtcTime), all from the log entry, so a
// replay gives the same values.
func execMeta(e event) *exec.Meta {
	m := &exec.Meta{Device: e.device, MessageID: e.meta.MessageId, CorrelationID: e.meta.CorrelationId, Enqueued: e.arrival}
	for _, p := range e.meta.UserProperties {
		m.User = append(m.User, exec.UserProperty{Key: p.Key, Value: p.Value})
	}
	return m
}

// updateForwardJobs lists the jobs forward sends events to, in name
// order: an entry's forwarded events are numbered (srcIdx) in this order,
// and partition 0 applies an entry's events once by that number (D3). In
// map order, a replay of the entry (a restart, a take-over) could number
// the jobs otherwise than the run whose events partition 0 had partly
// applied: one job's event dropped, the other's applied twice.
func (p *partition) updateForwardJobs() {
	p.forwardJobs = p.forwardJobs[:0]
	if p.id == 0 {
		return
	}
	for _, d := range p.jobs {
		if !d.partitioned {
			p.forwardJobs = append(p.forwardJobs, d)
		}
	}
	sort.Slice(p.forwardJobs, func(i, j int) bool { return p.forwardJobs[i].job.Name < p.forwardJobs[j].job.Name })
}

// forward queues e for every job that runs on partition 0 only and reads
// its input. A partition keeps a device's order, and so does one send.
func (p *partition) forward(e event) {
	if len(e.targets) > 0 {
		// Each job input of the message in turn, jobs in name order as
		// for any event (D3: a replay numbers them the same).
		for _, d := range p.forwardJobs {
			for _, t := range e.targets {
				if t.job == d.job.Name && d.reads(t.input) {
					te := e
					te.job, te.input, te.targets = t.job, t.input, nil
					p.forwardTo(d, te)
				}
			}
		}
		return
	}
	for _, d := range p.forwardJobs {
		if (e.job == "" || e.job == d.job.Name) && d.reads(e.input) {
			p.forwardTo(d, e)
		}
	}
}

// forwardTo queues e for job d on partition 0.
func (p *partition) forwardTo(d *deployedJob, e event) {
	f := e
	f.job, f.forwarded = d.job.Name, true
	f.origin, f.oseq = "", 0 // the gateway that forwarded e to this partition numbered it for this one only (C7)
	f.src, f.fwdGen = p.id, p.fwdGen
	if p.g.log != nil {
		f.srcSeq, f.srcIdx = p.applied, p.fwdIdx
		p.fwdIdx++
	}
	p.forwardBuf = append(p.forwardBuf, f)
}

func (p *partition) flushForward() {
	if len(p.forwardBuf) == 0 {
		return
	}
	if p.g.log != nil {
		// Through partition 0's log, so its replay sees them in the same
		// order relative to its own events and ticks (D2); clustered,
		// through the log of the gateway that serves partition 0. Not
		// past events still waiting in the cluster's forward queue (sent
		// there while partition 0 was served elsewhere or not yet):
		// partition 0 would apply these first and then drop those as
		// older than what it applied (D3).
		// Nor while partition 0's commits fail here (it is about to be
		// given up): the forwarder retries them, paced, until its next
		// server logs them.
		sent := false
		if p.g.cl == nil || !p.g.cl.link.Forwarding(0) && !p.g.CommitFailed(0) {
			_, sent = p.g.log.addServing(0, p.forwardBuf...)
		}
		if !sent {
			p.g.forwardToZero(p.id, p.forwardBuf)
		}
	} else {
		p.g.send(0, &eventBatch{events: p.forwardBuf})
	}
	p.forwardBuf = nil
}

func (d *deployedJob) reads(input string) bool {
	for _, in := range d.plan.Inputs {
		if strings.EqualFold(in.Name, input) {
			return true
		}
	}
	return false
}

// newExecutor compiles the job for partition part; its rows and dead
// letters go to out (nil: a compile check, nothing is kept).
func (d *deployedJob) newExecutor(g *Gateway, part int, out *jobOutput) (*exec.Executor, error) {
	opts := d.opts
	name := d.job.Name
	if out != nil {
		observe := stageObserver(g.stageSeconds, name)
		opts.StageTime = func(stage string, d time.Duration) {
			if !out.muted {
				observe(stage, d)
			}
		}
	}
	opts.Emit = func(output string, ts int64, rec *value.Record) {
		if out != nil && out.muted {
			return // a job being rebuilt (jobrestart.go)
		}
		g.rowsOut.Add(1)
		if g.sink != nil && out != nil {
			// Encoded here, in the job's actor, while rec is lent; the
			// partition numbers the row and sets its id (setRowID).
			row, kept := g.sink.Encode(name, output, ts, rec, rowIDPlaceholder)
			out.rows = append(out.rows, jobRow{step: out.step, output: output, ts: ts, row: row, kept: kept})
		}
	}
	opts.DeadLetter = func(dl exec.DeadLetter) {
		if out != nil && out.muted {
			return
		}
		g.dead1.Add(1)
		switch {
		case g.dead == nil:
		case out == nil:
			g.dead.DeadLetter(Rejected{Job: name, Partition: -1, DeadLetter: dl})
		default:
			out.dead = append(out.dead, jobDead{step: out.step, dl: dl})
		}
	}
	if out != nil {
		// What SetReference rejects below belongs to no op.
		out.step = stepOutsideOps
	}
	ex, err := exec.New(d.plan, opts)
	if err != nil {
		return nil, err
	}
	for ref, rows := range d.refs {
		if err := ex.SetReference(ref, rows); err != nil {
			if out != nil {
				return nil, fmt.Errorf("partition %d: %w", part, err)
			}
			return nil, err
		}
	}
	return ex, nil
}

// readReference reads a reference file, which must lie under the data
// roots (read through its resolved path, so a link changed since the
// check does not lead out).
func readReference(roots *DataRoots, path string) ([]*value.Record, error) {
	p, err := roots.ReferenceFile(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return value.ReadTable(data)
}

// countersMsg asks a partition for its executors' counters.
type countersMsg struct{}

type countersReply struct {
	byJob     map[string]exec.Counters
	stages    map[string]map[string]time.Duration
	watermark map[string]int64 // lowest per job; absent before any event
}

// batchSeconds is the time partitions spend on one batch of events.
var batchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "millstream_partition_batch_seconds",
	Help:    "Time a partition actor spends processing one batch of events (all jobs).",
	Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
})
