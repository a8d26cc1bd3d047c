package actors

import (
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/exec"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Output rows into the outbox and checkpoints (D2, D4, D5).

// emit assigns an output row its id (D2) and queues it for the outbox,
// unless the outbox has it from before a crash (D4).
func (p *partition) emit(job string, r jobRow) {
	p.outSeq++
	if p.outSeq <= p.written {
		if !p.scratch {
			p.g.replayedRows.Add(1)
		}
		return
	}
	if r.kept {
		setRowID(r.row.Entry, outputID(job, r.output, r.ts, p.id, p.outSeq))
		if p.partNo == nil {
			p.partNo = proto.Uint32(uint32(p.id))
		}
		r.row.Entry.Partition = p.partNo // shared: entries are not changed once made
		p.outBuf = append(p.outBuf, r.row)
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
		p.forwardBuf = append(p.forwardBuf, event{forwarded: true, mark: true, src: p.id, srcSeq: p.applied, srcIdx: math.MaxUint32, fwdGen: p.fwdGen})
	}
	p.flushOutbox()
	p.flushForward()
	if p.outSeq != p.written {
		return fmt.Errorf("partition %d: outbox behind; checkpoint skipped", p.id)
	}
	cp := &pb.Checkpoint{LogPosition: p.applied, OutputSeq: p.outSeq, Jobs: map[string][]byte{}}
	// The barrier: every job has answered all work up to p.applied
	// (each message to the partition ends with syncJobs), so each
	// snapshot is of the state at that position.
	snaps := make([][]byte, len(p.order))
	errs := p.callJobs(func(i int, ex *exec.Executor) (err error) {
		snaps[i], err = ex.Snapshot()
		return err
	})
	for i, r := range p.order {
		if err := errs[i]; err != nil {
			return fmt.Errorf("partition %d job %q: snapshot: %w", p.id, r.name(), err)
		}
		cp.Jobs[r.name()] = snaps[i]
	}
	if err := p.deviceCheckpoint(cp); err != nil {
		return err
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
