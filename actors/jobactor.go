package actors

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	"github.com/millstream/millstream/state"
)

// Operator actors. Each deployed job runs on each partition as a child
// actor of the partition actor (jobActor), which alone holds the job's
// executor: its windows, joins and other state. The partition stays the
// one place that orders the partition's input (log position, duplicates,
// devices, forwards to partition 0) and numbers its output rows. It hands
// each job the operations of a batch in one message (jobWork) and waits
// for every job's answer before the batch is done (syncJobs), so the hop
// costs one message per job per batch, not per event.
//
// The wait keeps output ids deterministic (D2): every operation gets a
// step number in the order the partition queued it, a job's rows and dead
// letters come back tagged with the step that made them, and the
// partition numbers them in step order: the order a single goroutine
// running one executor after another produced, however the jobs'
// goroutines interleave. A replay therefore numbers rows as the first run
// did, and a checkpoint is taken at a log position every job has reached
// (the barrier is the partition's applied position: all work up to it is
// answered before the snapshot is asked for).
//
// A job that panics is restarted alone (jobFailed): its actor is stopped
// and a new one started; the other jobs keep their state and their rows.
// In memory the new actor starts empty (the job's state is gone), the
// operation it failed on is dead-lettered as poison for that job and the
// rest of the batch goes on in the new actor. Durable, the new actor is
// rebuilt from the partition's checkpoint and log up to the entry it
// failed on, which it applies again; an entry a job panics on poisonLimit
// times is poison for that job (jobrestart.go).

// opKind is what a jobOp asks of an executor.
type opKind uint8

const (
	opIngest  opKind = iota // an event
	opAdvance               // a tick: event time moves to arrival
	opFlush                 // close every window (FlushWindows)
)

// jobOp is one operation of a batch for one job.
type jobOp struct {
	kind    opKind
	step    int32
	source  int // the partition the event comes from (A6), -1: this one
	input   string
	payload []byte
	rec     *value.Record
	meta    *exec.Meta
	arrival int64
}

// stepInfo is what the partition knows of a step when it numbers its
// dead letters: the log entry and device of the event.
type stepInfo struct {
	applied uint64
	device  string
	// after: the op is not part of entry applied but comes after it
	// (a flush asked for through the API).
	after bool
}

// jobRow is an output row of a job, encoded for its outbox (kept: the
// sink returned a row) but not numbered yet.
type jobRow struct {
	step   int32
	kept   bool
	output string
	ts     int64
	row    state.OutRow
}

// jobDead is a dead letter of a job, with the step of the event.
type jobDead struct {
	step int32
	dl   exec.DeadLetter
}

// jobOutput collects what one job made in a round. The job actor fills it
// while it runs a jobWork; the partition reads and empties it once the
// answer came (the channel orders the two).
type jobOutput struct {
	step int32 // the operation being applied
	// muted: the job is being rebuilt (jobrestart.go); what it makes
	// was made before and is not kept.
	muted bool
	rows  []jobRow
	dead  []jobDead
}

// dropFrom drops what steps from step on made (the rows and dead letters
// are in step order).
func (o *jobOutput) dropFrom(step int32) {
	for len(o.rows) > 0 && o.rows[len(o.rows)-1].step >= step {
		o.rows = o.rows[:len(o.rows)-1]
	}
	for len(o.dead) > 0 && o.dead[len(o.dead)-1].step >= step {
		o.dead = o.dead[:len(o.dead)-1]
	}
}

// jobWork asks a job actor to apply ops in order. measure: also report
// the job's state size.
type jobWork struct {
	ops     []jobOp
	measure bool
	done    chan<- jobDone
}

// jobCall runs fn on a job actor's executor (a snapshot, a restore, its
// counters): everything that touches the executor happens in its actor.
type jobCall struct {
	fn   func(ex *exec.Executor)
	done chan<- jobDone
}

// jobDone answers a jobWork or jobCall.
type jobDone struct {
	run *jobRun
	// failed is the op that panicked; -1: none; failedOutsideOps: the
	// work panicked after its ops (measuring the state).
	failed     int
	reason     string
	stack      []byte
	stateBytes int64
}

// failedOutsideOps is jobDone.failed for a work that panicked after its
// ops, while it measured the job's state.
const failedOutsideOps = -2

// stepOutsideOps tags what an executor makes outside any op: the dead
// letters of reference rows it is given when it is made.
const stepOutsideOps = -1

// jobActor is an operator actor: one job on one partition.
type jobActor struct {
	run *jobRun
	ex  *exec.Executor
}

func (a *jobActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *jobWork:
		m.done <- a.work(m)
	case *jobCall:
		m.done <- a.call(m)
	}
}

// work applies the ops. A panic ends the work at the op that caused it;
// the rows and dead letters that op made so far are dropped, so a replay
// that skips the op makes the same output.
func (a *jobActor) work(w *jobWork) (d jobDone) {
	d.run, d.failed = a.run, -1
	out := a.run.out
	i, inOps := 0, true
	defer func() {
		if r := recover(); r != nil {
			d.reason, d.stack = fmt.Sprint(r), debug.Stack()
			if !inOps || i >= len(w.ops) {
				d.failed = failedOutsideOps
				return
			}
			d.failed = i
			out.dropFrom(w.ops[i].step)
		}
	}()
	start := time.Now()
	for i = range w.ops {
		op := &w.ops[i]
		out.step = op.step
		if jobFault != nil {
			jobFault(a.run.name(), op)
		}
		switch op.kind {
		case opIngest:
			switch {
			case op.rec != nil:
				_ = a.ex.IngestRecordFrom(op.input, op.source, op.rec, op.arrival)
			case op.meta != nil:
				_ = a.ex.IngestMeta(op.input, op.source, op.payload, op.arrival, op.meta)
			default:
				_ = a.ex.IngestFrom(op.input, op.source, op.payload, op.arrival)
			}
		case opAdvance:
			a.ex.AdvanceTime(op.arrival)
		case opFlush:
			a.ex.Flush()
		}
	}
	inOps = false
	if w.measure {
		if jobFault != nil {
			jobFault(a.run.name(), nil) // nil: the measure
		}
		d.stateBytes = a.ex.StateBytes()
	}
	if !out.muted {
		took := time.Since(start)
		a.run.d.workNanos.Add(int64(took))
		jobWorkSeconds.Observe(took.Seconds())
	}
	return d
}

func (a *jobActor) call(c *jobCall) (d jobDone) {
	d.run, d.failed = a.run, -1
	defer func() {
		if r := recover(); r != nil {
			d.failed, d.reason, d.stack = 0, fmt.Sprint(r), debug.Stack()
		}
	}()
	c.fn(a.ex)
	return d
}

// jobFault, when a test sets it, is called before each op a job applies
// and before it measures its state (op nil): fault injection for a job
// that panics. Nil in production.
var jobFault func(job string, op *jobOp)

// jobRun is the partition's handle on one of its job actors.
type jobRun struct {
	d   *deployedJob
	pid *actor.PID
	// ex is the executor the actor owns. The partition calls only the
	// methods that read the compiled plan (Reads, ReadsMetadata), which
	// do not change after exec.New; state goes through the actor.
	ex  *exec.Executor
	out *jobOutput
	ops []jobOp // queued since the last round
	// deployedAt is the log position the job started at on this
	// partition (0: with the partition, from its checkpoint); a rebuild
	// feeds it only what came after (jobrestart.go).
	deployedAt uint64
	// measureFailed: measuring its state panicked once (logged once).
	measureFailed bool
	// Merge cursors (mergeJobOutputs).
	row, dead int
}

func (r *jobRun) name() string { return r.d.job.Name }

// resetOps empties the queue, keeping no payload alive past its batch.
func (r *jobRun) resetOps() {
	clear(r.ops)
	r.ops = r.ops[:0]
}

// startJob compiles job d for the partition and starts its actor.
func (p *partition) startJob(d *deployedJob) (*jobRun, error) {
	r := &jobRun{d: d, out: &jobOutput{}}
	if err := p.spawnJob(r); err != nil {
		return nil, err
	}
	return r, nil
}

// spawnJob gives r a new executor and a new actor holding it.
func (p *partition) spawnJob(r *jobRun) error {
	ex, err := r.d.newExecutor(p.g, p.id, r.out)
	if err != nil {
		return err
	}
	r.ex = ex
	a := &jobActor{run: r, ex: ex}
	r.pid = p.ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
	return nil
}

// stopJob stops a job's actor; its state goes with it.
func (p *partition) stopJob(r *jobRun) {
	if r != nil && r.pid != nil {
		p.ctx.Stop(r.pid)
		r.pid = nil
	}
}

// nextStep numbers an operation; info is its event, for dead letters.
func (p *partition) nextStep(applied uint64, device string, after bool) int32 {
	p.steps = append(p.steps, stepInfo{applied: applied, device: device, after: after})
	return int32(len(p.steps) - 1)
}

// queueIngest queues event e for job r. A record (a Devices event) is
// copied for each job: an executor may convert its values or add fields
// in place (a declared schema, IoT Hub metadata), and the jobs run at
// once.
func (p *partition) queueIngest(r *jobRun, e event) {
	if p.g.poisonedFor(p.id, r.name(), p.applied, false) || p.scratch && p.applied <= r.deployedAt {
		return // poison for this job, or before it was deployed (jobrestart.go)
	}
	op := jobOp{kind: opIngest, step: p.nextStep(p.applied, p.curDevice, false), source: p.source(r, e), input: e.input,
		payload: e.payload, arrival: e.arrival}
	switch {
	case e.rec != nil:
		op.rec = e.rec.Copy()
	case e.meta != nil && r.ex.ReadsMetadata(e.input):
		op.meta = execMeta(e)
	}
	r.ops = append(r.ops, op)
}

// queueAll queues an operation without an event (a tick, a flush) for
// every job. A flush is not part of a log entry: it comes after the
// partition's position.
func (p *partition) queueAll(kind opKind, now int64) {
	after := kind == opFlush
	for _, r := range p.order {
		if !p.g.poisonedFor(p.id, r.name(), p.applied, after) && !(p.scratch && p.applied <= r.deployedAt) {
			r.ops = append(r.ops, jobOp{kind: kind, step: p.nextStep(p.applied, "", after), arrival: now})
		}
	}
}

// syncJobs sends each job the operations queued for it, waits for every
// answer, restarts a job that panicked, and numbers the rows and dead
// letters in step order. With measure it returns each job's state size
// (every job is asked, with or without work; -1: its measure failed).
func (p *partition) syncJobs(measure bool) map[*jobRun]int64 {
	var sizes map[*jobRun]int64
	if measure {
		sizes = make(map[*jobRun]int64, len(p.order))
	}
	pending := p.pending[:0] // reused: syncJobs runs once a batch
	for _, r := range p.order {
		if len(r.ops) > 0 || measure {
			pending = append(pending, r)
		}
	}
	for len(pending) > 0 {
		if cap(p.replies) < len(pending) {
			p.replies = make(chan jobDone, len(p.order))
		}
		for _, r := range pending {
			p.ctx.Send(r.pid, &jobWork{ops: r.ops, measure: measure, done: p.replies})
		}
		n := len(pending)
		pending = pending[:0]
		for range n {
			d := <-p.replies
			if d.failed == -1 {
				d.run.resetOps()
				if measure {
					sizes[d.run] = d.stateBytes
				}
				continue
			}
			if d.failed == failedOutsideOps && measure {
				sizes[d.run] = -1 // unknown
			}
			// A job whose measure panicked is not asked again this round.
			if run, rest := p.jobFailed(d); len(rest) > 0 || measure && d.failed != failedOutsideOps {
				run.ops = rest
				pending = append(pending, run)
			}
		}
	}
	p.pending = pending[:0]
	p.mergeJobOutputs()
	p.steps = p.steps[:0]
	return sizes
}

// callJobs runs fn on every job's executor, in its actor, and waits; i
// is the job's place in p.order, where fn may write its answer (each
// job its own slot). errs[i] is what fn returned for job i, or its panic.
func (p *partition) callJobs(fn func(i int, ex *exec.Executor) error) (errs []error) {
	if len(p.order) == 0 {
		return nil
	}
	if cap(p.replies) < len(p.order) {
		p.replies = make(chan jobDone, len(p.order))
	}
	errs = make([]error, len(p.order))
	index := make(map[*jobRun]int, len(p.order))
	for i, r := range p.order {
		index[r] = i
		p.ctx.Send(r.pid, &jobCall{fn: func(ex *exec.Executor) { errs[i] = fn(i, ex) }, done: p.replies})
	}
	for range p.order {
		if d := <-p.replies; d.failed >= 0 {
			errs[index[d.run]] = fmt.Errorf("job %q panicked: %s", d.run.name(), d.reason)
		}
	}
	return errs
}

// jobPanic is what a durable partition panics with when one of its jobs
// did: the partition's supervisor restarts it and recovery brings the
// job's state back (and counts the entry towards the poison limit).
type jobPanic struct {
	job, reason string
}

func (j jobPanic) String() string { return fmt.Sprintf("job %q: %s", j.job, j.reason) }

// jobFailed restarts a job that panicked on op d.failed and returns the
// run that replaces it and the ops the new actor is to apply next.
func (p *partition) jobFailed(d jobDone) (*jobRun, []jobOp) {
	r := d.run
	if p.scratch {
		// Rebuilding the job (jobrestart.go) met a panic the live run had
		// not: that rebuild is given up.
		panic(errRebuildPanicked{reason: d.reason})
	}
	if d.failed == failedOutsideOps {
		// Measuring reads the state and changes nothing: the job goes on
		// as it is (a restart would rebuild the same state, which would
		// panic the same way), unmeasured this time.
		p.g.panics.Add(1)
		if !r.measureFailed {
			r.measureFailed = true
			p.g.cfg.Logger.Error("measuring a job's state panicked; its memory budget is not checked on this partition while it does",
				"partition", p.id, "job", r.name(), "reason", d.reason, "stack", string(d.stack))
		}
		r.resetOps()
		return r, nil
	}
	// From here d.failed is the op that panicked.
	if p.g.store != nil {
		return p.restartDurable(r, d)
	}
	defer r.resetOps()
	op := r.ops[d.failed]
	info := p.steps[op.step]
	p.g.jobRestarts.Add(1)
	r.d.restarts.Add(1)
	p.g.panics.Add(1)
	p.g.cfg.Logger.Error("job panicked on the partition and was restarted alone; its state on the partition was lost (no durable state)",
		"partition", p.id, "job", r.name(), "device", info.device, "reason", d.reason, "stack", string(d.stack))
	if op.kind == opIngest {
		p.g.deadLetterPoison(r.name(), p.id, info.applied, info.device, op.input, op.payload, op.rec, "the job panicked on it: "+d.reason)
	}
	p.stopJob(r)
	if err := p.spawnJob(r); err != nil {
		// Cannot happen: the job compiled when it was deployed.
		p.g.cfg.Logger.Error("job does not start again on the partition", "partition", p.id, "job", r.name(), "error", err)
		p.dropJob(r.name())
		return r, nil
	}
	return r, append([]jobOp(nil), r.ops[d.failed+1:]...)
}

// stepOf is what the partition knows of step s; a step outside this
// round's (stepOutsideOps) is at the partition's position.
func (p *partition) stepOf(s int32) stepInfo {
	if s < 0 || int(s) >= len(p.steps) {
		return stepInfo{applied: p.applied}
	}
	return p.steps[s]
}

// mergeJobOutputs emits the rows and dead letters of the last round in
// step order (see the top of the file) and empties the jobs' outputs.
func (p *partition) mergeJobOutputs() {
	for {
		best := p.earliest(func(r *jobRun) (int32, bool) {
			if r.row < len(r.out.rows) {
				return r.out.rows[r.row].step, true
			}
			return 0, false
		})
		if best == nil {
			break
		}
		row := best.out.rows[best.row]
		best.out.rows[best.row] = jobRow{}
		best.row++
		p.panicAt = p.stepOf(row.step).applied // a panic from here on is this entry's
		p.emit(best.name(), row)
	}
	for {
		best := p.earliest(func(r *jobRun) (int32, bool) {
			if r.dead < len(r.out.dead) {
				return r.out.dead[r.dead].step, true
			}
			return 0, false
		})
		if best == nil {
			break
		}
		dd := best.out.dead[best.dead]
		best.out.dead[best.dead] = jobDead{}
		best.dead++
		p.deadLetter(best.name(), p.stepOf(dd.step), dd.dl)
	}
	for _, r := range p.order {
		r.out.rows, r.out.dead, r.row, r.dead = r.out.rows[:0], r.out.dead[:0], 0, 0
	}
	p.panicAt = 0
}

// earliest is the job whose next output (head) has the lowest step; nil
// when none has one.
func (p *partition) earliest(head func(r *jobRun) (int32, bool)) *jobRun {
	var best *jobRun
	var low int32
	for _, r := range p.order {
		if step, ok := head(r); ok && (best == nil || step < low) {
			best, low = r, step
		}
	}
	return best
}

// deadLetter keeps a job's dead letter, numbered within its log entry.
func (p *partition) deadLetter(job string, info stepInfo, dl exec.DeadLetter) {
	if p.g.dead == nil || p.scratch {
		return
	}
	if info.applied != p.dlPos {
		p.dlPos, p.dlIdx = info.applied, 0
	}
	p.g.dead.DeadLetter(Rejected{Job: job, Partition: p.id, Pos: info.applied, Idx: p.dlIdx, Source: info.device, DeadLetter: dl})
	p.dlIdx++
}

// jobWorkSeconds is the time job actors spend on one round of operations
// (all jobs; per job the total is JobStatus.WorkSeconds).
var jobWorkSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "millstream_job_round_seconds",
	Help:    "Time one job actor spends on one round of work (a batch's operations) on one partition; per job: millstream_job_work_seconds_total.",
	Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
})
