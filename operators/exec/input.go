package exec

import (
	"container/heap"
	"fmt"
	"math"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const minTime = math.MinInt64

// inputOp gives events their event time and applies the event-ordering
// policies, per timeline (substream).
type inputOp struct {
	ex        *Executor
	name      string
	tsEval    expr.Eval // nil: arrival time
	overEvals []expr.Eval
	dec       value.Decoder
	ctx       expr.Ctx
	keyBuf    []byte
	tls       []*timeline
	tlIndex   map[string]int32
	idleWm    int64
	schema    *schema
	out       []node
	r         row
	// metadata: the plan reads the input's metadata or gives its events
	// the IoT Hub properties (iothub); only then does an event's Meta
	// cost anything.
	metadata bool
	iothub   bool
}

// timeline is one substream: its own maximum event time, watermark and
// reorder buffer.
type timeline struct {
	key     string
	maxSeen int64
	wm      int64
	buf     timeHeap[bufferedRow]
	seq     uint64
	// srcs are the sources the timeline is merged from, by source number
	// (IngestFrom); nil when every event came without one. The rest
	// caches what mergedWatermark computes from them.
	srcs      []sourceClock
	srcNewest int64 // latest arrival of any source
	srcLow    int64 // lowest maxSeen of the active sources
	srcLowAt  int   // the source holding srcLow; -1: recompute
	srcOldest int64 // earliest arrival of an active source
}

// sourceClock is how far one source of a merged timeline has got. A
// timeline merged from sources (a gateway's partitions feeding a job that
// runs on one of them) takes the lowest watermark of its sources that are
// not idle: events of a source that lags behind another are not adjusted
// as out of order because the other one is ahead. This is how Stream
// Analytics combines the partitions of one input. It applies to inputs
// with TIMESTAMP BY only: arrival time is the gateway's own clock, with
// nothing to wait for. A source is idle once its latest event arrived more
// than the late-arrival tolerance before the newest event of any source;
// it then holds nothing back, and counts again when it sends.
type sourceClock struct {
	maxSeen int64 // highest event time; minTime: no event yet
	arrival int64 // arrival time of its latest event; minTime: none known
}

type bufferedRow struct {
	row
	seq uint64
}

func newInput(ex *Executor, in *pb.Input) (*inputOp, error) {
	op := &inputOp{ex: ex, name: in.Name, tlIndex: map[string]int32{}, idleWm: minTime}
	op.dec.MaxDepth = ex.opts.MaxDepth
	op.schema = schemaFor(ex.plan, in.Name)
	op.iothub = in.IothubProperties
	op.metadata = in.Metadata || in.IothubProperties
	if fields, all := neededFields(ex.plan, in); !all {
		op.dec.Fields = append(fields, op.schema.columns()...)
	}
	var err error
	if op.tsEval, err = ex.compileOpt(in.TimestampBy); err != nil {
		return nil, fmt.Errorf("exec: input %q TIMESTAMP BY: %w", in.Name, err)
	}
	for _, o := range in.Over {
		e, err := ex.compile(o)
		if err != nil {
			return nil, fmt.Errorf("exec: input %q OVER: %w", in.Name, err)
		}
		op.overEvals = append(op.overEvals, e)
	}
	return op, nil
}

// noSource marks an event that does not come from one of several merged
// sources.
const noSource = -1

func (in *inputOp) ingest(payload []byte, arrival int64, src int, meta *expr.Meta) {
	in.ex.counters.EventsIn++
	rec, err := in.dec.Decode(payload)
	if err != nil {
		in.ex.deadLetter(DeadLetter{Input: in.name, Kind: DeadLetterMalformed, Reason: err.Error(), Payload: payload})
		return
	}
	in.ingestRecord(rec, arrival, payload, src, meta)
}

// withMeta completes an event's metadata (its arrival time) and adds the
// IoT Hub properties to rec where the input asks for them; nil when the
// plan reads no metadata.
func (in *inputOp) withMeta(rec *value.Record, arrival int64, payload []byte, meta *expr.Meta) *expr.Meta {
	if !in.metadata {
		return nil
	}
	if meta == nil {
		meta = &expr.Meta{}
	}
	if meta.Enqueued == 0 && arrival != ArrivalIsEventTime {
		meta.Enqueued = arrival
	}
	if meta.Payload == nil {
		meta.Payload = payload
	}
	if in.iothub {
		meta.AddIoTHubFields(rec)
	}
	return meta
}

// eventTime evaluates TIMESTAMP BY.
func (in *inputOp) eventTime(rec *value.Record, arrival int64) (int64, error) {
	in.ctx = expr.Ctx{Rec: rec, TS: arrival}
	v := in.tsEval(&in.ctx)
	if in.ctx.Err != nil {
		return 0, fmt.Errorf("TIMESTAMP BY: %w", in.ctx.Err)
	}
	switch v.Kind() {
	case value.DateTime:
		return v.Ticks(), nil
	case value.String:
		t, err := value.ParseTime(v.Str())
		if err != nil {
			return 0, fmt.Errorf("TIMESTAMP BY: %w", err)
		}
		return t, nil
	case value.Null:
		return 0, fmt.Errorf("TIMESTAMP BY: the event has no timestamp (NULL)")
	}
	return 0, fmt.Errorf("TIMESTAMP BY: %s %s is not a datetime", v.Kind(), v)
}

func (in *inputOp) ingestRecord(rec *value.Record, arrival int64, payload []byte, src int, meta *expr.Meta) {
	ex := in.ex
	meta = in.withMeta(rec, arrival, payload, meta)
	if err := in.schema.apply(rec); err != nil {
		in.reject(rec, payload, DeadLetterWrongType, err.Error())
		return
	}
	var t int64
	if in.tsEval != nil {
		var err error
		if t, err = in.eventTime(rec, arrival); err != nil {
			in.reject(rec, payload, DeadLetterTimestamp, err.Error())
			return
		}
		if arrival != ArrivalIsEventTime {
			if t > arrival+ex.early {
				ex.counters.EarlyDropped++
				return
			}
			if t < arrival-ex.late {
				if ex.opts.OutOfOrderPolicy == Drop {
					ex.counters.LateDropped++
					return
				}
				ex.counters.LateAdjusted++
				t = arrival - ex.late
			}
		}
	} else {
		if arrival == ArrivalIsEventTime {
			in.reject(rec, payload, DeadLetterTimestamp, "the input has no TIMESTAMP BY and the event no arrival time")
			return
		}
		t = arrival
	}
	tlID, err := in.timelineOf(rec)
	if err != nil {
		in.reject(rec, payload, DeadLetterKey, err.Error())
		return
	}
	tl := in.tls[tlID]
	if t < tl.wm {
		if in.tsEval == nil {
			t = tl.wm // an arrival clock that went backwards
		} else if ex.opts.OutOfOrderPolicy == Drop {
			ex.counters.OutOfOrderDropped++
			return
		} else {
			ex.counters.OutOfOrderAdjusted++
			t = tl.wm
		}
	}
	if src >= 0 && in.tsEval != nil {
		tl.maxSeen = max(tl.maxSeen, t)
		in.raise(tl, in.mergedWatermark(tl, src, t, arrival))
	} else if t > tl.maxSeen {
		tl.maxSeen = t
		in.raise(tl, sat(t, -in.oooTicks()))
	}
	if tl.buf.Len() == 0 && t <= tl.wm {
		in.r = row{ts: t, tl: tlID, rec: rec, meta: meta}
		in.emit(&in.r)
		return
	}
	// Keep a copy: the decoder reuses rec (X3).
	c := rec.Copy()
	tl.buf.push(bufferedRow{row: row{ts: t, tl: tlID, rec: c, meta: meta}, seq: tl.seq})
	tl.seq++
	in.release(tl)
}

// mergedWatermark records an event of time t from source src on tl and
// returns the timeline's watermark over its sources (sourceClock). The
// lowest source is found again only when it may have changed: the event
// is the lowest source's, its source was idle or new, or a source may
// have become idle. Otherwise it costs O(1), not O(sources).
func (in *inputOp) mergedWatermark(tl *timeline, src int, t, arrival int64) int64 {
	for src >= len(tl.srcs) {
		tl.srcs = append(tl.srcs, sourceClock{maxSeen: minTime, arrival: minTime})
	}
	c := &tl.srcs[src]
	idleBefore := sat(tl.srcNewest, -in.ex.late)
	wasActive := c.maxSeen != minTime && (c.arrival == minTime || c.arrival >= idleBefore)
	c.maxSeen = max(c.maxSeen, t)
	if arrival != ArrivalIsEventTime {
		c.arrival = max(c.arrival, arrival)
	}
	tl.srcNewest = max(tl.srcNewest, c.arrival)
	if !wasActive || src == tl.srcLowAt || tl.srcLowAt < 0 || tl.srcOldest < sat(tl.srcNewest, -in.ex.late) {
		in.findLowestSource(tl)
	}
	return sat(tl.srcLow, -in.oooTicks())
}

// findLowestSource sets tl's cached lowest active source.
func (in *inputOp) findLowestSource(tl *timeline) {
	idleBefore := sat(tl.srcNewest, -in.ex.late)
	tl.srcLow, tl.srcLowAt, tl.srcOldest = math.MaxInt64, -1, math.MaxInt64
	for i, c := range tl.srcs {
		if c.maxSeen == minTime || c.arrival != minTime && c.arrival < idleBefore {
			continue // no event yet, or idle
		}
		if c.maxSeen < tl.srcLow {
			tl.srcLow, tl.srcLowAt = c.maxSeen, i
		}
		if c.arrival != minTime {
			tl.srcOldest = min(tl.srcOldest, c.arrival)
		}
	}
}

func (in *inputOp) oooTicks() int64 {
	if in.tsEval == nil {
		return 0
	}
	return in.ex.ooo
}

func (in *inputOp) reject(rec *value.Record, payload []byte, kind, reason string) {
	if payload == nil {
		payload = value.AppendRecordJSON(nil, rec)
	}
	in.ex.deadLetter(DeadLetter{Input: in.name, Kind: kind, Reason: reason, Payload: payload})
}

func (in *inputOp) timelineOf(rec *value.Record) (int32, error) {
	in.keyBuf = in.keyBuf[:0]
	if len(in.overEvals) > 0 {
		in.ctx = expr.Ctx{Rec: rec}
		for _, e := range in.overEvals {
			in.keyBuf = value.AppendKey(in.keyBuf, e(&in.ctx))
		}
		if in.ctx.Err != nil {
			return 0, fmt.Errorf("TIMESTAMP BY OVER: %w", in.ctx.Err)
		}
	}
	if id, ok := in.tlIndex[string(in.keyBuf)]; ok {
		return id, nil
	}
	return in.addTimeline(string(in.keyBuf)), nil
}

func (in *inputOp) addTimeline(key string) int32 {
	id := int32(len(in.tls))
	tl := &timeline{key: key, maxSeen: minTime, wm: in.idleWm, srcNewest: minTime, srcLowAt: -1}
	in.tls = append(in.tls, tl)
	in.tlIndex[key] = id
	return id
}

// raise moves a timeline's watermark up (never down).
func (in *inputOp) raise(tl *timeline, wm int64) {
	if wm > tl.wm {
		tl.wm = wm
	}
}

// release emits buffered rows at or below the watermark, in order.
func (in *inputOp) release(tl *timeline) {
	for tl.buf.Len() > 0 && tl.buf.minTime() <= tl.wm {
		br := tl.buf.pop()
		in.r = br.row
		in.emit(&in.r)
	}
}

func (in *inputOp) emit(r *row) {
	for _, n := range in.out {
		n.push(r)
	}
}

func (in *inputOp) advanceIdle(now int64) {
	wm := now
	if in.tsEval != nil {
		wm = sat(now, -in.ex.late)
	}
	if wm <= in.idleWm {
		return
	}
	in.idleWm = wm
	for id, tl := range in.tls {
		in.raise(tl, wm)
		in.release(tl)
		for _, n := range in.out {
			n.advance(int32(id), tl.wm)
		}
	}
}

func (in *inputOp) flush() {
	for _, tl := range in.tls {
		for tl.buf.Len() > 0 {
			br := tl.buf.pop()
			if br.ts > tl.wm {
				tl.wm = br.ts
			}
			in.r = br.row
			in.emit(&in.r)
		}
	}
	for _, n := range in.out {
		n.advance(-1, math.MaxInt64)
	}
}

// sat adds d to t, saturating at the int64 range.
func sat(t, d int64) int64 {
	if d < 0 && t < math.MinInt64-d {
		return math.MinInt64
	}
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

func (in *inputOp) snapshot() *pb.InputState {
	s := &pb.InputState{Name: in.name, IdleWatermark: in.idleWm}
	for _, tl := range in.tls {
		ts := &pb.TimelineState{Key: []byte(tl.key), MaxSeen: tl.maxSeen, Watermark: tl.wm, NextSeq: tl.seq}
		for _, c := range tl.srcs {
			ts.Sources = append(ts.Sources, &pb.SourceClock{MaxSeen: c.maxSeen, Arrival: c.arrival})
		}
		for _, br := range tl.buf {
			ts.Buffered = append(ts.Buffered, &pb.RowState{Ts: br.ts, Timeline: br.tl, Record: value.RecordToProto(br.rec), Seq: br.seq})
		}
		s.Timelines = append(s.Timelines, ts)
	}
	return s
}

func (in *inputOp) restore(s *pb.InputState) {
	in.idleWm = s.IdleWatermark
	in.tls = nil
	in.tlIndex = map[string]int32{}
	for _, ts := range s.Timelines {
		id := in.addTimeline(string(ts.Key))
		tl := in.tls[id]
		tl.maxSeen, tl.wm, tl.seq = ts.MaxSeen, ts.Watermark, ts.NextSeq
		for _, c := range ts.Sources {
			tl.srcs = append(tl.srcs, sourceClock{maxSeen: c.MaxSeen, arrival: c.Arrival})
			tl.srcNewest = max(tl.srcNewest, c.Arrival)
		}
		for _, r := range ts.Buffered {
			// The row's timeline is the one it is buffered in, not the
			// number the checkpoint gives: a stage keeps state per
			// timeline number, and a checkpoint saying 32,544,384 made
			// one grow a slice to it (13 s of CPU, FuzzRestore).
			tl.buf = append(tl.buf, bufferedRow{row: row{ts: r.Ts, tl: id, rec: value.RecordFromProto(r.Record)}, seq: r.Seq})
		}
		heap.Init(&tl.buf)
	}
}
