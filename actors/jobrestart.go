package actors

import (
	"errors"
	"fmt"
	"math"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Restarting one job of a durable partition alone. A job's state is
// whatever its checkpointed snapshot plus the log after it make of it, so
// a job actor that panicked is replaced by one rebuilt that way, up to the
// log entry it failed on, while the partition and its other jobs go on
// with what they have:
//
//   - a scratch partition (scratch: counts nothing, emits nothing, keeps
//     no dead letters) with the partition's checkpointed state and the one
//     job replays the log from the checkpoint through the entry before,
//     so the events reach the job exactly as the live partition routed
//     them (duplicates, device liveness events, twins);
//   - the job's rows of the failing entry from the old actor are dropped
//     and the new actor applies the entry again: the rows come out as a
//     run without the failure made them;
//   - an entry a job has panicked on poisonLimit times is poison for that
//     job: dead-lettered, and skipped for that job (the other jobs still
//     have it) every time it is applied again, a replay after a restart
//     included (queueIngest, queueAll).
//
//   - a job deployed after the checkpoint started empty where it was
//     deployed (jobRun.deployedAt): it gets no state from the checkpoint
//     and only the entries after that position;
//   - a flush (FlushWindows) is not in the log, so the partition
//     checkpoints right after one and a rebuild starts past it;
//   - a panic while measuring the state (after the ops) restarts nothing:
//     measuring changes nothing, so the job goes on, taken as having
//     state (its partition keeps ticking) and without a budget check.
//
// If the rebuild cannot be done (the checkpoint or the log cannot be
// read, or the job panics in the replay where the live run did not), the
// partition restarts as a whole and recovers every job instead. Left as
// it was: a full recovery (recover) restores a job redeployed after the
// checkpoint from the old version's snapshot when the two fit.

// jobRebuildFault, when a test sets it, makes a rebuild fail first (fault
// injection). Nil in production.
var jobRebuildFault func() error

// errRebuildPanicked ends a rebuild whose replay panicked.
type errRebuildPanicked struct{ reason string }

func (e errRebuildPanicked) Error() string {
	return "the job panicked while it was rebuilt: " + e.reason
}

// jobEntry is a log entry of a partition, for one job; after: the ops
// that come after the entry (a flush), not the entry's.
type jobEntry struct {
	part  int
	job   string
	seq   uint64
	after bool
}

// noteJobPanic counts a panic of job on entry seq of partition part and
// returns how many there were.
func (g *Gateway) noteJobPanic(k jobEntry) int {
	g.poisonMu.Lock()
	defer g.poisonMu.Unlock()
	if g.jobPoison == nil {
		g.jobPoison = map[jobEntry]int{}
	}
	g.jobPoison[k]++
	if g.jobPoison[k] == poisonLimit {
		g.jobPoisoned.Add(1)
	}
	return g.jobPoison[k]
}

// poisonedFor reports whether entry seq of partition part is poison for
// job: its ops are not queued for it.
func (g *Gateway) poisonedFor(part int, job string, seq uint64, after bool) bool {
	if g.jobPoisoned.Load() == 0 {
		return false // the usual case: no lock on the per-event path
	}
	g.poisonMu.Lock()
	defer g.poisonMu.Unlock()
	return g.jobPoison[jobEntry{part, job, seq, after}] >= poisonLimit
}

// restartDurable replaces job r, which panicked on op d.failed, by an
// actor rebuilt up to the entry of that op, and returns it with the ops it
// is to apply: the entry's again, or, once the entry is poison for the
// job, those after it.
func (p *partition) restartDurable(r *jobRun, d jobDone) (*jobRun, []jobOp) {
	// first and next bound the failing entry's ops among the job's ops
	// of this round; the rebuild goes up to the entry before (through
	// the entry, for a flush that comes after it).
	at := p.steps[r.ops[d.failed].step]
	seq, through := at.applied, at.applied
	if !at.after {
		through = seq - 1
	}
	same := func(i int) bool { s := p.steps[r.ops[i].step]; return s.applied == seq && s.after == at.after }
	first, next := d.failed, d.failed+1
	for first > 0 && same(first-1) {
		first--
	}
	for next < len(r.ops) && same(next) {
		next++
	}
	r.out.dropFrom(r.ops[first].step)
	crashes := p.g.noteJobPanic(jobEntry{p.id, r.name(), seq, at.after})
	p.g.panics.Add(1)
	nr, err := p.rebuildJob(r.d, r.deployedAt, through)
	if err != nil {
		// The rows made before the failure are not written: recovery
		// makes them again.
		p.g.cfg.Logger.Error("job panicked and could not be rebuilt alone; the partition restarts", "partition", p.id, "job", r.name(),
			"seq", seq, "reason", d.reason, "rebuild_error", err)
		p.panicAt = seq
		panic(jobPanic{job: r.name(), reason: d.reason})
	}
	p.g.jobRestarts.Add(1)
	r.d.restarts.Add(1)
	// The new actor takes the rows of this round made before the entry.
	nr.out.rows, nr.out.dead = r.out.rows, r.out.dead
	r.out.rows, r.out.dead = nil, nil
	p.stopJob(r)
	p.runs[r.name()] = nr
	for i := range p.order {
		if p.order[i] == r {
			p.order[i] = nr
		}
	}
	rest := r.ops[first:]
	if crashes >= poisonLimit {
		rest = r.ops[next:]
		op := r.ops[d.failed]
		p.g.skippedPoison.Add(1)
		p.g.cfg.Logger.Error("log entry skipped for the job and dead-lettered as poison", "partition", p.id, "job", r.name(), "seq", seq,
			"reason", d.reason)
		if op.kind == opIngest {
			p.g.deadLetterPoison(r.name(), p.id, seq, at.device, op.input, op.payload, op.rec,
				fmt.Sprintf("the job panicked on it %d times: %s", crashes, d.reason))
		}
	} else {
		p.g.cfg.Logger.Error("job panicked on the partition; restarted alone from its checkpoint and log", "partition", p.id, "job", r.name(),
			"seq", seq, "panics_there", crashes, "reason", d.reason, "stack", string(d.stack))
	}
	return nr, append([]jobOp(nil), rest...)
}

// rebuildJob starts an actor for job d whose state is the checkpoint's
// plus the log through entry through, replayed in a scratch partition.
func (p *partition) rebuildJob(d *deployedJob, deployedAt, through uint64) (nr *jobRun, err error) {
	if jobRebuildFault != nil {
		if err := jobRebuildFault(); err != nil {
			return nil, err
		}
	}
	nr = &jobRun{d: d, out: &jobOutput{muted: true}, deployedAt: deployedAt}
	if err := p.spawnJob(nr); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(errRebuildPanicked)
			if !ok {
				panic(r)
			}
			err = e
		}
		if err != nil {
			p.stopJob(nr)
			nr = nil
		}
	}()
	s := &partition{g: p.g, id: p.id, ctx: p.ctx, scratch: true, written: math.MaxUint64,
		runs: map[string]*jobRun{d.job.Name: nr}, order: []*jobRun{nr}, jobs: map[string]*deployedJob{d.job.Name: d},
		devices:    map[string]*deviceEntry{},
		fwdApplied: map[int]fwdPos{}, origins: map[string]uint64{}}
	if f := p.g.cfg.SequenceField; f != "" {
		s.seqDecoder = value.Decoder{Fields: []string{f}}
	}
	cp, err := p.g.store.LoadCheckpoint(p.id)
	if err != nil {
		return nil, err
	}
	if p.g.cl != nil {
		if cp, err = p.newestCheckpoint(cp); err != nil {
			return nil, err
		}
	}
	if cp != nil {
		s.applied = cp.LogPosition
		if deployedAt <= cp.LogPosition {
			// Deployed after the checkpoint, the job started empty
			// there, and the replay feeds it only what came after.
			if err := s.restoreJobs(cp); err != nil {
				return nil, err
			}
		}
		s.restoreState(cp)
	}
	if through > s.applied {
		err = p.g.store.ReadLog(p.id, s.applied, func(seq uint64, le *pb.LogEntry) error {
			if seq > through {
				return errReadEnough
			}
			e := eventOf(le)
			s.setApplied(seq)
			if p.g.poisoned(p.id, seq, e) {
				return nil
			}
			s.apply(e)
			if len(s.steps) >= 256 {
				s.syncJobs(false)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errReadEnough) {
			return nil, fmt.Errorf("partition %d: rebuilding job %q: %w", p.id, d.job.Name, err)
		}
		s.syncJobs(false)
	}
	nr.out.muted = false
	return nr, nil
}
