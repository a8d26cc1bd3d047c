package exec

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// joinRecord builds the row of a join stage into dst: the left fields, the
// right fields whose names the left does not use, and the right alias
// holding the whole right record (NULL for an unmatched LEFT JOIN row).
func joinRecord(dst *value.Record, left, right *value.Record, alias string) {
	dst.Names = append(dst.Names[:0], left.Names...)
	dst.Vals = append(dst.Vals[:0], left.Vals...)
	if right != nil {
		for i, n := range right.Names {
			if left.Index(n) < 0 {
				dst.Names = append(dst.Names, n)
				dst.Vals = append(dst.Vals, right.Vals[i])
			}
		}
	}
	dst.Names = append(dst.Names, alias)
	dst.Vals = append(dst.Vals, value.RecordValue(right))
}

// chainFields are the extra duties of a join inside a chain of joins: add
// the event times of its two rows to the joined row (for a later join's
// DATEDIFF), or drop those times again (the last join). Empty for a plain
// two-way join, which then pays one length check per row.
type chainFields struct {
	leftTime, rightTime string
	drop                []string
	out                 value.Record
}

func newChainFields(j *pb.Join) chainFields {
	return chainFields{leftTime: j.LeftTimeField, rightTime: j.RightTimeField, drop: j.DropFields}
}

// addTimes appends the time fields to a row joinRecord built; right is
// false for an unmatched LEFT JOIN row.
func (c *chainFields) addTimes(dst *value.Record, lts, rts int64, right bool) {
	if c.leftTime != "" {
		dst.Names = append(dst.Names, c.leftTime)
		dst.Vals = append(dst.Vals, value.Time(lts))
	}
	if c.rightTime != "" {
		v := value.Value{}
		if right {
			v = value.Time(rts)
		}
		dst.Names = append(dst.Names, c.rightTime)
		dst.Vals = append(dst.Vals, v)
	}
}

// output is the row to emit: rec itself, or (last join of a chain) rec
// without the earlier joins' time fields, in a buffer reused per call.
func (c *chainFields) output(rec *value.Record) *value.Record {
	if len(c.drop) == 0 {
		return rec
	}
	c.out.Names, c.out.Vals = c.out.Names[:0], c.out.Vals[:0]
	for i, n := range rec.Names {
		if !slices.Contains(c.drop, n) {
			c.out.Names = append(c.out.Names, n)
			c.out.Vals = append(c.out.Vals, rec.Vals[i])
		}
	}
	return &c.out
}

// refTable is a loaded reference input.
type refTable struct {
	rows []*value.Record
}

// SetReference loads (or reloads) the rows of a reference input. Stream
// state is untouched: rows that arrive afterwards join the new table.
// Reference data is not part of snapshots; load it again after Restore.
func (ex *Executor) SetReference(name string, rows []*value.Record) error {
	key := strings.ToLower(name)
	known := false
	for _, r := range ex.plan.References {
		known = known || strings.EqualFold(r, name)
	}
	if !known {
		return fmt.Errorf("%w: %q is not a reference input of this query", ErrUnknownInput, name)
	}
	sc := schemaFor(ex.plan, name)
	t := &refTable{rows: make([]*value.Record, 0, len(rows))}
	for _, r := range rows {
		c := r.Clone()
		if err := sc.apply(c); err != nil {
			ex.deadLetter(DeadLetter{Input: name, Kind: DeadLetterReference, Reason: "reference row: " + err.Error(), Payload: value.AppendRecordJSON(nil, r)})
			continue
		}
		t.rows = append(t.rows, c)
	}
	ex.refs[key] = t
	return nil
}

// References returns the names of the plan's reference inputs.
func (ex *Executor) References() []string { return append([]string(nil), ex.plan.References...) }

// refJoinNode joins each row with a reference table, in front of a stage.
// Every reference row is tried against ON; LEFT JOIN keeps rows without a
// match. Analytic functions of the stage see the rows before the join.
type refJoinNode struct {
	ex    *Executor
	stage string
	table string
	alias string
	left  bool
	on    expr.Eval
	an    *analyticSet
	chain chainFields
	next  node
	ctx   expr.Ctx
	rec   value.Record
	r     row
}

func (n *refJoinNode) advance(tl int32, wm int64) { n.next.advance(tl, wm) }

func (n *refJoinNode) push(r *row) {
	n.ctx = expr.Ctx{Rec: r.rec, TS: r.ts, Meta: r.meta}
	if n.an != nil {
		n.an.eval(&n.ctx, r.tl)
		if n.ctx.Err != nil {
			n.ex.stageError(n.stage, r.rec, "analytic function", n.ctx.Err)
			return
		}
	}
	t := n.ex.refs[n.table]
	matched := false
	if t != nil {
		for _, ref := range t.rows {
			joinRecord(&n.rec, r.rec, ref, n.alias)
			n.chain.addTimes(&n.rec, r.ts, 0, false) // reference rows have no time
			n.ctx = expr.Ctx{Rec: &n.rec, TS: r.ts, Analytics: n.ctx.Analytics}
			ok := expr.Truth(n.on(&n.ctx))
			if n.ctx.Err != nil {
				n.ex.stageError(n.stage, &n.rec, "JOIN ON", n.ctx.Err)
				return
			}
			if ok {
				matched = true
				n.r = row{ts: r.ts, tl: r.tl, rec: n.chain.output(&n.rec), analyzed: true}
				n.next.push(&n.r)
			}
		}
	}
	if !matched && n.left {
		joinRecord(&n.rec, r.rec, nil, n.alias)
		n.chain.addTimes(&n.rec, r.ts, 0, false)
		n.r = row{ts: r.ts, tl: r.tl, rec: n.chain.output(&n.rec), analyzed: true}
		n.next.push(&n.r)
	}
}

// streamJoin joins two streams within a time bound: every pair whose right
// time minus left time lies in [minGap, maxGap] is tried against ON and
// emitted at the later of the two times. Each side keeps its rows until the
// other side's watermark shows they can match nothing more; a LEFT JOIN
// then emits an unmatched left row at its time plus the bound. Output waits
// until no earlier row can still appear (X1), and is on timeline 0.
type streamJoin struct {
	ex        *Executor
	name      string
	alias     string
	on        expr.Eval
	leftOuter bool
	minGap    int64
	maxGap    int64
	delay     int64
	sides     [2]joinSideState
	keys      [2][]expr.Eval // equality keys per side; none: try every pair
	chain     chainFields
	keyBuf    []byte
	pending   timeHeap[bufferedRow]
	seq       uint64
	next      node
	ctx       expr.Ctx
	rec       value.Record
	r         row
}

type joinSideState struct {
	wm    int64
	rows  []*joinRow            // in time order
	index map[string][]*joinRow // by key, each in time order
}

type joinRow struct {
	ts      int64
	rec     *value.Record
	matched bool
	key     string
}

// joinInput is the node one side of a stream join receives rows on.
type joinInput struct {
	j    *streamJoin
	side int
}

func newStreamJoin(ex *Executor, st *pb.Stage, next node) (*streamJoin, error) {
	on, err := ex.compile(st.Join.On)
	if err != nil {
		return nil, fmt.Errorf("JOIN ON: %w", err)
	}
	j := &streamJoin{ex: ex, name: st.Name + "/join", alias: st.Join.Alias, on: on, leftOuter: st.Join.LeftOuter,
		minGap: st.Join.MinGap, maxGap: st.Join.MaxGap, delay: st.Join.UnmatchedDelay, chain: newChainFields(st.Join), next: next}
	if j.minGap > j.maxGap {
		return nil, fmt.Errorf("%w: join gap [%d, %d]", ErrBadPlan, j.minGap, j.maxGap)
	}
	j.sides[0].wm, j.sides[1].wm = math.MinInt64, math.MinInt64
	for side, keys := range [2][]*pb.Expr{st.Join.LeftKeys, st.Join.RightKeys} {
		for _, k := range keys {
			e, err := ex.compile(k)
			if err != nil {
				return nil, fmt.Errorf("JOIN key: %w", err)
			}
			j.keys[side] = append(j.keys[side], e)
		}
	}
	if len(j.keys[0]) != len(j.keys[1]) {
		return nil, fmt.Errorf("%w: %d left keys, %d right keys", ErrBadPlan, len(j.keys[0]), len(j.keys[1]))
	}
	return j, nil
}

// keyOf evaluates a side's equality keys on its own record.
func (j *streamJoin) keyOf(side int, rec *value.Record, ts int64) string {
	if len(j.keys[side]) == 0 {
		return ""
	}
	j.keyBuf = j.keyBuf[:0]
	ctx := expr.Ctx{Rec: rec, TS: ts}
	for _, k := range j.keys[side] {
		v := k(&ctx)
		// ON compares a datetime with a string as datetimes: give both one
		// key form (1 and 1.0 already share one).
		if v.Kind() == value.String && value.LooksLikeTime(v.Str()) {
			if t, err := value.ParseTime(v.Str()); err == nil {
				v = value.Time(t)
			}
		}
		j.keyBuf = value.AppendKey(j.keyBuf, v)
	}
	return string(j.keyBuf)
}

func (s *joinSideState) insert(r *joinRow) {
	s.rows = append(s.rows, r)
	if s.index == nil {
		s.index = map[string][]*joinRow{}
	}
	s.index[r.key] = append(s.index[r.key], r)
}

func (j *streamJoin) stageName() string        { return j.name }
func (j *streamJoin) analytics() *analyticSet  { return nil }
func (j *streamJoin) push(*row)                {}
func (j *streamJoin) advance(int32, int64)     {}
func (in joinInput) push(r *row)               { in.j.add(in.side, r) }
func (in joinInput) advance(_ int32, wm int64) { in.j.progress(in.side, wm) }

func (j *streamJoin) add(side int, r *row) {
	rec := r.rec.Copy()
	me := &joinRow{ts: r.ts, rec: rec, key: j.keyOf(side, rec, r.ts)}
	other := &j.sides[1-side]
	for _, o := range other.index[me.key] {
		left, right := me, o
		if side == 1 {
			left, right = o, me
		}
		if g := right.ts - left.ts; g < j.minGap || g > j.maxGap {
			continue
		}
		joinRecord(&j.rec, left.rec, right.rec, j.alias)
		j.chain.addTimes(&j.rec, left.ts, right.ts, true)
		j.ctx = expr.Ctx{Rec: &j.rec, TS: max(left.ts, right.ts), JoinTS: [2]int64{left.ts, right.ts}}
		ok := expr.Truth(j.on(&j.ctx))
		if j.ctx.Err != nil {
			j.ex.stageError(j.name, &j.rec, "JOIN ON", j.ctx.Err)
			continue
		}
		if ok {
			left.matched = true
			j.queue(max(left.ts, right.ts), j.chain.output(&j.rec).Copy())
		}
	}
	j.sides[side].insert(me)
	j.progress(side, r.ts)
}

func (j *streamJoin) queue(ts int64, rec *value.Record) {
	j.pending.push(bufferedRow{row: row{ts: ts, rec: rec}, seq: j.seq})
	j.seq++
}

// progress raises a side's watermark, retires rows that can match nothing
// more, and releases output that nothing earlier can precede.
func (j *streamJoin) progress(side int, wm int64) {
	if wm > j.sides[side].wm {
		j.sides[side].wm = wm
	}
	l, r := &j.sides[0], &j.sides[1]
	// A left row at t matches right rows up to t+maxGap.
	k := 0
	for k < len(l.rows) && sat(l.rows[k].ts, j.maxGap) < r.wm {
		if j.leftOuter && !l.rows[k].matched {
			joinRecord(&j.rec, l.rows[k].rec, nil, j.alias)
			j.chain.addTimes(&j.rec, l.rows[k].ts, 0, false)
			j.queue(sat(l.rows[k].ts, j.delay), j.chain.output(&j.rec).Copy())
		}
		k++
	}
	l.dropFront(k)
	// A right row at t matches left rows down to t-maxGap... up to t-minGap.
	k = 0
	for k < len(r.rows) && sat(r.rows[k].ts, -j.minGap) < l.wm {
		k++
	}
	r.dropFront(k)
	j.release()
}

// dropFront retires the k oldest rows; each is also the oldest of its key.
func (s *joinSideState) dropFront(k int) {
	if k == 0 {
		return
	}
	for _, r := range s.rows[:k] {
		b := s.index[r.key]
		if len(b) <= 1 {
			delete(s.index, r.key)
		} else {
			b[0] = nil
			s.index[r.key] = b[1:]
		}
	}
	// Re-slicing, not copying: append moves the live rows to a fresh array
	// when it grows, so dropping is O(1) amortized.
	clear(s.rows[:k])
	s.rows = s.rows[k:]
}

// safe is the time below which no output can still be produced.
func (j *streamJoin) safe() int64 {
	t := min(j.sides[0].wm, j.sides[1].wm)
	if j.leftOuter {
		t = min(t, sat(j.sides[0].wm, j.delay))
		for _, lr := range j.sides[0].rows {
			if !lr.matched {
				t = min(t, sat(lr.ts, j.delay))
				break
			}
		}
	}
	return t
}

func (j *streamJoin) release() {
	t := j.safe()
	for j.pending.Len() > 0 && j.pending.minTime() <= t {
		br := j.pending.pop()
		j.r = row{ts: br.ts, rec: br.rec}
		j.next.push(&j.r)
	}
	j.next.advance(-1, t)
}

func (j *streamJoin) snapshot() *pb.StageState {
	st := &pb.StageState{Name: j.name, NextSeq: j.seq}
	for _, s := range j.sides {
		js := &pb.JoinSide{Watermark: s.wm}
		for _, r := range s.rows {
			js.Rows = append(js.Rows, &pb.JoinRow{Row: &pb.RowState{Ts: r.ts, Record: value.RecordToProto(r.rec)}, Matched: r.matched})
		}
		st.JoinSides = append(st.JoinSides, js)
	}
	for _, br := range j.pending {
		st.JoinPending = append(st.JoinPending, &pb.RowState{Ts: br.ts, Record: value.RecordToProto(br.rec), Seq: br.seq})
	}
	return st
}

func (j *streamJoin) restore(st *pb.StageState) error {
	if len(st.JoinSides) != 2 {
		return fmt.Errorf("%w: join %q has %d sides", ErrBadSnapshot, j.name, len(st.JoinSides))
	}
	j.seq = st.NextSeq
	for i, js := range st.JoinSides {
		j.sides[i] = joinSideState{wm: js.Watermark}
		for _, r := range js.Rows {
			jr := &joinRow{ts: r.GetRow().GetTs(), rec: value.RecordFromProto(r.GetRow().GetRecord()), matched: r.Matched}
			jr.key = j.keyOf(i, jr.rec, jr.ts)
			j.sides[i].insert(jr)
		}
	}
	j.pending = nil
	for _, r := range st.JoinPending {
		j.pending.push(bufferedRow{row: row{ts: r.Ts, rec: value.RecordFromProto(r.Record)}, seq: r.Seq})
	}
	return nil
}
