package exec

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// matchNode runs MATCH_RECOGNIZE in front of a stage. Per timeline and
// PARTITION BY key it keeps the events of the last LIMIT DURATION and looks
// for the longest match of the PATTERN that starts at the oldest one. A
// match is final when no further event could extend it (the pattern cannot
// continue, the duration has run out, or the input ended); its MEASURES
// become one row at the time of its last event. AFTER MATCH SKIP TO NEXT
// ROW tries again from the next event (matches may overlap); SKIP PAST LAST
// ROW from the event after the match. Rows wait until no partition can
// still produce an earlier one (X1).
type matchNode struct {
	ex       *Executor
	name     string
	duration int64
	skipPast bool
	parts    []expr.Eval
	pattern  *pb.PatternNode
	defines  map[string]expr.Eval // lower-case variable -> condition
	measures []projection
	names    []string
	aggs     []matchAgg
	next     node
	tls      map[int32]*matchTimeline
	seq      uint64
	keyBuf   []byte
	ctx      expr.Ctx
	rec      value.Record
	r        row
}

type matchAgg struct {
	fn  pb.MatchAggregate_Func
	v   string // lower case
	arg expr.Eval
}

type matchTimeline struct {
	parts   map[string]*matchPartition
	pending timeHeap[bufferedRow]
}

type matchPartition struct {
	events []bufferedRow
}

// maxMatchSteps bounds the backtracking for one attempt, so a pathological
// pattern cannot stall the gateway; such an attempt counts as no match.
const maxMatchSteps = 200000

func newMatchNode(ex *Executor, st *pb.Stage, next node) (*matchNode, error) {
	m := st.Match
	n := &matchNode{ex: ex, name: st.Name + "/match", duration: m.Duration, skipPast: m.SkipPastLast, pattern: m.Pattern,
		defines: map[string]expr.Eval{}, next: next, tls: map[int32]*matchTimeline{}}
	for _, p := range m.PartitionBy {
		e, err := ex.compile(p)
		if err != nil {
			return nil, fmt.Errorf("MATCH_RECOGNIZE PARTITION BY: %w", err)
		}
		n.parts = append(n.parts, e)
	}
	for _, d := range m.Define {
		e, err := ex.compile(d.Cond)
		if err != nil {
			return nil, fmt.Errorf("DEFINE %s: %w", d.Var, err)
		}
		n.defines[strings.ToLower(d.Var)] = e
	}
	for _, a := range m.Aggregates {
		e, err := ex.compile(a.Arg)
		if err != nil {
			return nil, fmt.Errorf("MATCH_RECOGNIZE aggregate: %w", err)
		}
		n.aggs = append(n.aggs, matchAgg{fn: a.Func, v: strings.ToLower(a.Var), arg: e})
	}
	for _, c := range m.Measures {
		e, err := ex.compile(c.Expr)
		if err != nil {
			return nil, fmt.Errorf("MEASURES %s: %w", c.Name, err)
		}
		n.measures = append(n.measures, projection{name: c.Name, eval: e})
	}
	n.names = staticNames(n.measures)
	if m.Duration <= 0 || m.Pattern == nil {
		return nil, fmt.Errorf("%w: MATCH_RECOGNIZE without duration or pattern", ErrBadPlan)
	}
	return n, nil
}

func (n *matchNode) stageName() string       { return n.name }
func (n *matchNode) analytics() *analyticSet { return nil }
func (n *matchNode) timeline(tl int32) *matchTimeline {
	t := n.tls[tl]
	if t == nil {
		t = &matchTimeline{parts: map[string]*matchPartition{}}
		n.tls[tl] = t
	}
	return t
}

func (n *matchNode) push(r *row) {
	n.ctx = expr.Ctx{Rec: r.rec, TS: r.ts, Meta: r.meta}
	n.keyBuf = n.keyBuf[:0]
	for _, p := range n.parts {
		n.keyBuf = value.AppendKey(n.keyBuf, p(&n.ctx))
	}
	if n.ctx.Err != nil {
		n.ex.stageError(n.name, r.rec, "MATCH_RECOGNIZE PARTITION BY", n.ctx.Err)
		return
	}
	t := n.timeline(r.tl)
	p := t.parts[string(n.keyBuf)]
	if p == nil {
		p = &matchPartition{}
		t.parts[string(n.keyBuf)] = p
	}
	rec := r.rec.Copy()
	p.events = append(p.events, bufferedRow{row: row{ts: r.ts, tl: r.tl, rec: rec}, seq: n.seq})
	n.seq++
	n.process(r.tl, t, p, r.ts, false)
	n.release(r.tl, t, r.ts)
}

func (n *matchNode) advance(tl int32, wm int64) {
	for id, t := range n.tls {
		if tl >= 0 && id != tl {
			continue
		}
		keys := make([]string, 0, len(t.parts))
		for k := range t.parts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.process(id, t, t.parts[k], wm, wm == math.MaxInt64)
		}
		n.release(id, t, wm)
	}
	n.next.advance(tl, wm)
}

// process emits every final match of a partition at time now.
func (n *matchNode) process(tl int32, t *matchTimeline, p *matchPartition, now int64, final bool) {
	for len(p.events) > 0 {
		first := p.events[0].ts
		end := len(p.events)
		for end > 0 && p.events[end-1].ts > first+n.duration {
			end--
		}
		expired := now > first+n.duration
		m := matcher{n: n, events: p.events[:end], assign: make([]string, end)}
		length, assign, canExtend := m.run()
		if canExtend && end == len(p.events) && !expired && !final {
			return // a later event may still extend the match
		}
		drop := 1
		if length > 0 {
			n.emitMatch(tl, t, p.events[:length], assign)
			if n.skipPast {
				drop = length
			}
		}
		p.events = p.events[drop:]
	}
}

func (n *matchNode) emitMatch(tl int32, t *matchTimeline, events []bufferedRow, assign []string) {
	last := events[len(events)-1]
	n.bind(events, assign, len(events)-1, "")
	project(&n.rec, n.names, n.measures, false, &n.ctx)
	if n.ctx.Err != nil {
		n.ex.stageError(n.name, last.rec, "MEASURES", n.ctx.Err)
		return
	}
	t.pending.push(bufferedRow{row: row{ts: last.ts, tl: tl, rec: n.rec.Copy()}, seq: n.seq})
	n.seq++
}

// bind prepares n.ctx for evaluating a DEFINE condition or the MEASURES
// over events[:upto+1] assigned to variables: the current row's fields,
// each variable's last row under its name (the current row for cur), and
// the First/Last/Min/Max aggregates.
func (n *matchNode) bind(events []bufferedRow, assign []string, upto int, cur string) {
	rec := &value.Record{}
	curRow := events[upto].rec
	rec.Names = append(rec.Names, curRow.Names...)
	rec.Vals = append(rec.Vals, curRow.Vals...)
	lastOf := map[string]*value.Record{}
	for i := 0; i <= upto; i++ {
		if assign[i] != "" {
			lastOf[assign[i]] = events[i].rec
		}
	}
	if cur != "" {
		lastOf[cur] = curRow
	}
	for v, r := range lastOf {
		rec.Set(v, value.RecordValue(r))
	}
	aggVals := make([]value.Value, len(n.aggs))
	for i, a := range n.aggs {
		var acc value.Value
		seen := false
		for j := 0; j <= upto; j++ {
			v := assign[j]
			if j == upto && cur != "" {
				v = cur
			}
			if v != a.v {
				continue
			}
			one := &value.Record{Names: append([]string(nil), events[j].rec.Names...), Vals: append([]value.Value(nil), events[j].rec.Vals...)}
			one.Set(a.v, value.RecordValue(events[j].rec))
			sub := expr.Ctx{Rec: one, TS: events[j].ts}
			x := a.arg(&sub)
			switch {
			case a.fn == pb.MatchAggregate_FIRST:
				if !seen {
					acc = x
				}
			case a.fn == pb.MatchAggregate_LAST:
				acc = x
			case !seen:
				acc = x
			default:
				if c, err := value.Compare(x, acc); err == nil && ((a.fn == pb.MatchAggregate_MIN && c < 0) || (a.fn == pb.MatchAggregate_MAX && c > 0)) {
					acc = x
				}
			}
			seen = true
		}
		aggVals[i] = acc
	}
	n.ctx = expr.Ctx{Rec: rec, TS: events[upto].ts, Aggs: aggVals}
}

// release hands on match rows that no partition can precede any more.
func (n *matchNode) release(tl int32, t *matchTimeline, now int64) {
	safe := now
	for _, p := range t.parts {
		if len(p.events) > 0 {
			safe = min(safe, p.events[0].ts)
		}
	}
	for t.pending.Len() > 0 && t.pending.minTime() <= safe {
		br := t.pending.pop()
		n.r = br.row
		n.next.push(&n.r)
	}
}

// matcher finds the longest match of the pattern at the start of events.
type matcher struct {
	n         *matchNode
	events    []bufferedRow
	assign    []string
	best      int
	bestAsg   []string
	canExtend bool
	steps     int
}

func (m *matcher) run() (int, []string, bool) {
	m.match(m.n.pattern, 0, func(pos int) {
		if pos > m.best {
			m.best = pos
			m.bestAsg = append(m.bestAsg[:0], m.assign[:pos]...)
		}
	})
	if m.steps > maxMatchSteps {
		return 0, nil, false
	}
	return m.best, m.bestAsg, m.canExtend
}

// match tries node at pos and calls k with every position a match of node
// can end at (greedy order).
func (m *matcher) match(node *pb.PatternNode, pos int, k func(int)) {
	if m.steps++; m.steps > maxMatchSteps {
		return
	}
	m.repeat(node, pos, 0, k)
}

func (m *matcher) repeat(node *pb.PatternNode, pos, count int, k func(int)) {
	if node.Max < 0 || count < int(node.Max) {
		m.once(node, pos, func(next int) {
			if next > pos { // no empty iterations
				m.repeat(node, next, count+1, k)
			}
		})
	}
	if count >= int(node.Min) {
		k(pos)
	}
}

func (m *matcher) once(node *pb.PatternNode, pos int, k func(int)) {
	if m.steps++; m.steps > maxMatchSteps {
		return
	}
	switch node.Kind {
	case pb.PatternNode_VAR:
		if pos >= len(m.events) {
			m.canExtend = true // the next event could continue the pattern here
			return
		}
		v := strings.ToLower(node.Var)
		if cond, ok := m.n.defines[v]; ok {
			m.n.bind(m.events, m.assign, pos, v)
			if !expr.Truth(cond(&m.n.ctx)) || m.n.ctx.Err != nil {
				return
			}
		}
		m.assign[pos] = v
		k(pos + 1)
		m.assign[pos] = ""
	case pb.PatternNode_SEQ:
		var step func(i, at int)
		step = func(i, at int) {
			if i == len(node.Items) {
				k(at)
				return
			}
			m.match(node.Items[i], at, func(next int) { step(i+1, next) })
		}
		step(0, pos)
	case pb.PatternNode_ALT:
		for _, it := range node.Items {
			m.match(it, pos, k)
		}
	}
}

func (n *matchNode) snapshot() *pb.StageState {
	st := &pb.StageState{Name: n.name, NextSeq: n.seq}
	tls := make([]int32, 0, len(n.tls))
	for tl := range n.tls {
		tls = append(tls, tl)
	}
	sort.Slice(tls, func(i, j int) bool { return tls[i] < tls[j] })
	for _, tl := range tls {
		t := n.tls[tl]
		keys := make([]string, 0, len(t.parts))
		for k := range t.parts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			mp := &pb.MatchPartition{Timeline: tl, Partition: []byte(k)}
			for _, e := range t.parts[k].events {
				mp.Events = append(mp.Events, &pb.RowState{Ts: e.ts, Timeline: tl, Record: value.RecordToProto(e.rec), Seq: e.seq})
			}
			st.MatchPartitions = append(st.MatchPartitions, mp)
		}
		for _, br := range t.pending {
			st.MatchPending = append(st.MatchPending, &pb.RowState{Ts: br.ts, Timeline: tl, Record: value.RecordToProto(br.rec), Seq: br.seq})
		}
	}
	return st
}

func (n *matchNode) restore(st *pb.StageState) error {
	n.seq = st.NextSeq
	n.tls = map[int32]*matchTimeline{}
	for _, mp := range st.MatchPartitions {
		p := &matchPartition{}
		for _, e := range mp.Events {
			p.events = append(p.events, bufferedRow{row: row{ts: e.Ts, tl: mp.Timeline, rec: value.RecordFromProto(e.Record)}, seq: e.Seq})
		}
		n.timeline(mp.Timeline).parts[string(mp.Partition)] = p
	}
	for _, r := range st.MatchPending {
		n.timeline(r.Timeline).pending.push(bufferedRow{row: row{ts: r.Ts, tl: r.Timeline, rec: value.RecordFromProto(r.Record)}, seq: r.Seq})
	}
	return nil
}
