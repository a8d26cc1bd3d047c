package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Recovery from the store (D3, D4) and poison entries: an entry that
// crashes its partition poisonLimit times is skipped and dead-lettered.

// recover loads the partition's checkpoint and replays its log (D4).
// Partition 0 recovers before the others, so the positions it applied
// forwarded events to are known (D3).
func (p *partition) recover() error {
	st := p.g.store
	// The replay forwards again what partition 0 has not logged, lost
	// forwards too (fwdredo.go): a redo open for this partition is done.
	p.fwdGen, _ = p.g.takeRedo(p.id)
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
		if err := p.restoreJobs(cp); err != nil {
			return err
		}
		p.restoreState(cp)
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
			if guard.marking() {
				// The mark says the entry was applied: the jobs must
				// have applied it.
				p.syncJobs(false)
			}
			guard.after(seq)
			replayed++
		}
		if len(p.steps) >= 256 || len(p.outBuf) >= 256 || len(p.forwardBuf) >= 256 {
			p.syncJobs(false)
			p.flushOutbox()
			p.flushForward()
		}
		return nil
	})
	p.syncJobs(false)
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
		if len(p.fwdDrops) > 0 {
			p.logFwdDrops("replaying")
		}
		if p.g.debugForwards {
			p.g.cfg.Logger.Debug("partition 0 recovered", "applied", p.applied, "forwards_applied", fmt.Sprint(p.fwdApplied))
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

// poisonLimit is how many times a log entry may crash its partition before
// recovery skips it: a deterministic failure would otherwise crash the
// partition on every replay.
const poisonLimit = 3

// notePanic, deferred while a partition applies log entries, records the
// entry that was being applied when it panicked, then lets the panic go
// on to the supervisor.
func (p *partition) notePanic() {
	if r := recover(); r != nil {
		seq := p.applied
		if p.panicAt != 0 {
			seq = p.panicAt
		}
		p.g.notePoison(p.id, seq, fmt.Sprint(r), 1)
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
		g.deadLetterPoison(e.job, part, seq, e.device, e.input, e.payload, e.rec, reason)
	}
	return true
}

// deadLetterPoison keeps an event skipped as poison (for every job, or
// for job alone), with why: its payload, or its record as JSON.
func (g *Gateway) deadLetterPoison(job string, part int, seq uint64, device, input string, payload []byte, rec *value.Record, reason string) {
	g.dead1.Add(1)
	if g.dead == nil {
		return
	}
	if payload == nil && rec != nil {
		payload = value.AppendRecordJSON(nil, rec)
	}
	g.dead.DeadLetter(Rejected{Job: job, Partition: part, Pos: seq, Source: device, DeadLetter: exec.DeadLetter{Input: input,
		Kind: DeadLetterPoison, Reason: reason, Payload: payload}})
}

// poisonEntry is what the gateway knows of a log entry that crashed its
// partition.
type poisonEntry struct {
	crashes int
	reason  string // the last panic
	fatal   bool   // it ended the process (replayguard.go)
	skipped bool
}

// restoreJobs gives each job the state the checkpoint holds for it; a job
// whose state does not fit (it was changed while the gateway was down)
// starts empty.
func (p *partition) restoreJobs(cp *pb.Checkpoint) error {
	for name := range cp.Jobs {
		if p.runs[name] == nil && !p.scratch {
			// A job removed since the checkpoint: normal, once per
			// partition, so not a warning.
			p.g.cfg.Logger.Debug("checkpoint holds state of a job that is not deployed; ignored", "partition", p.id, "job", name)
		}
	}
	order := slices.Clone(p.order) // a job that cannot start again leaves it
	errs := p.callJobs(func(i int, ex *exec.Executor) error {
		if snap, ok := cp.Jobs[order[i].name()]; ok {
			return ex.Restore(snap)
		}
		return nil
	})
	for i, r := range order {
		if err := errs[i]; err != nil {
			// The job was changed while the gateway was down.
			if !p.scratch {
				p.g.restoreFailures.Add(1)
			}
			p.g.cfg.Logger.Warn("job state does not match the deployed job; the job starts empty", "partition", p.id, "job", r.name(), "error", err)
			p.stopJob(r)
			if err := p.spawnJob(r); err != nil {
				p.dropJob(r.name())
				return err
			}
		}
	}
	return nil
}

// restoreState takes the partition's own state from the checkpoint:
// devices, twins, resends and forwards applied.
func (p *partition) restoreState(cp *pb.Checkpoint) {
	p.restoreDevices(cp)
	for o, seq := range cp.Origins {
		p.origins[o] = seq
	}
	for src, seq := range cp.Forwarded {
		p.fwdApplied[int(src)] = fwdPos{seq, cp.ForwardedIndex[src]}
	}
	p.unforwarded = slices.Clone(cp.Unforwarded)
}
