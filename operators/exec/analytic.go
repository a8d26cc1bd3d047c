package exec

import (
	"fmt"
	"sort"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// analyticSet evaluates a stage's analytic functions (LAG, LAST, ISFIRST)
// on every row that enters the stage, before WHERE, as the reference
// requires. Each function keeps a short history per timeline and PARTITION
// BY key: LAG at most `offset` events, LAST one, ISFIRST the end of the
// interval it last fired in; entries older than LIMIT DURATION are dropped.
type analyticSet struct {
	ops  []*analyticOp
	vals []value.Value
	key  []byte
}

type analyticOp struct {
	fn  pb.Analytic_Func
	agg aggSpec // AGGREGATE
	// anomaly detection
	confidence  float64
	historySize int
	mode        string
	value       expr.Eval
	def         expr.Eval
	when        expr.Eval
	parts       []expr.Eval
	offset      int
	duration    int64
	// history by timeline, then by encoded partition key
	hist map[int32]map[string]*analyticHist
}

type analyticHist struct {
	entries []analyticEntry // oldest first
	m       float64         // ChangePoint martingale
}

type analyticEntry struct {
	ts int64
	v  value.Value
}

func newAnalyticSet(ex *Executor, specs []*pb.Analytic) (*analyticSet, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	s := &analyticSet{vals: make([]value.Value, len(specs))}
	for i, a := range specs {
		op := &analyticOp{fn: a.Func, offset: int(a.Offset), duration: a.Duration, hist: map[int32]map[string]*analyticHist{},
			confidence: a.Confidence, historySize: int(a.HistorySize), mode: a.Mode}
		var err error
		if a.Func == pb.Analytic_AGGREGATE {
			op.agg.fn = a.Aggregate
		}
		if a.Func != pb.Analytic_ISFIRST && !(a.Func == pb.Analytic_AGGREGATE && a.Value == nil) {
			if op.value, err = ex.compile(a.Value); err != nil {
				return nil, fmt.Errorf("analytic %d: %w", i, err)
			}
		}
		if op.def, err = ex.compileOpt(a.Default); err != nil {
			return nil, fmt.Errorf("analytic %d default: %w", i, err)
		}
		if op.when, err = ex.compileOpt(a.When); err != nil {
			return nil, fmt.Errorf("analytic %d WHEN: %w", i, err)
		}
		for _, p := range a.PartitionBy {
			e, err := ex.compile(p)
			if err != nil {
				return nil, fmt.Errorf("analytic %d PARTITION BY: %w", i, err)
			}
			op.parts = append(op.parts, e)
		}
		if a.Func == pb.Analytic_FUNC_UNSPECIFIED || a.Duration <= 0 || (a.Func == pb.Analytic_LAG && a.Offset < 1) {
			return nil, fmt.Errorf("%w: analytic %d (%s, duration %d, offset %d)", ErrBadPlan, i, a.Func, a.Duration, a.Offset)
		}
		s.ops = append(s.ops, op)
	}
	return s, nil
}

// eval computes every analytic for the row in ctx (time ctx.TS) and folds
// the row into their histories. Results land in ctx.Analytics.
func (s *analyticSet) eval(ctx *expr.Ctx, tl int32) {
	if s == nil {
		return
	}
	ctx.Analytics = s.vals
	for i, op := range s.ops {
		s.key = s.key[:0]
		for _, p := range op.parts {
			s.key = value.AppendKey(s.key, p(ctx))
		}
		byKey := op.hist[tl]
		if byKey == nil {
			byKey = map[string]*analyticHist{}
			op.hist[tl] = byKey
		}
		h := byKey[string(s.key)]
		if h == nil {
			h = &analyticHist{}
			byKey[string(s.key)] = h
		}
		s.vals[i] = op.step(ctx, h)
	}
}

func (op *analyticOp) step(ctx *expr.Ctx, h *analyticHist) value.Value {
	now := ctx.TS
	matches := op.when == nil || expr.Truth(op.when(ctx))
	if op.fn == pb.Analytic_ISFIRST {
		if !matches {
			return value.Int(0)
		}
		end := alignUp(now, op.duration, 0)
		if len(h.entries) == 1 && h.entries[0].ts == end {
			return value.Int(0)
		}
		h.entries = append(h.entries[:0], analyticEntry{ts: end})
		return value.Int(1)
	}
	// Drop history that LIMIT DURATION no longer reaches.
	k := 0
	for k < len(h.entries) && h.entries[k].ts < now-op.duration {
		k++
	}
	if k > 0 {
		clear(h.entries[:k])
		h.entries = h.entries[k:] // O(1); append compacts when it grows
	}
	var cur value.Value
	if matches && op.value != nil {
		cur = op.value(ctx).Clone()
	}
	switch op.fn {
	case pb.Analytic_AGGREGATE:
		return op.aggregate(ctx, h, matches, cur)
	case pb.Analytic_SPIKE_AND_DIP, pb.Analytic_CHANGE_POINT:
		return op.anomaly(ctx, h, matches, cur)
	}
	var out value.Value
	switch op.fn {
	case pb.Analytic_LAST:
		switch {
		case matches:
			out = cur // the current event is its own LAST
		case len(h.entries) > 0:
			out = h.entries[len(h.entries)-1].v
		case op.def != nil:
			out = op.def(ctx)
		}
		if matches {
			h.entries = append(h.entries[:0], analyticEntry{ts: now, v: cur})
		}
	default: // LAG
		if len(h.entries) >= op.offset {
			out = h.entries[len(h.entries)-op.offset].v
		} else if op.def != nil {
			out = op.def(ctx)
		}
		if matches {
			h.entries = append(h.entries, analyticEntry{ts: now, v: cur})
			if extra := len(h.entries) - op.offset; extra > 0 {
				h.entries = append(h.entries[:0], h.entries[extra:]...)
			}
		}
	}
	return out
}

func (s *analyticSet) snapshot(st *pb.StageState) {
	if s == nil {
		return
	}
	for i, op := range s.ops {
		tls := make([]int32, 0, len(op.hist))
		for tl := range op.hist {
			tls = append(tls, tl)
		}
		sort.Slice(tls, func(a, b int) bool { return tls[a] < tls[b] })
		for _, tl := range tls {
			keys := make([]string, 0, len(op.hist[tl]))
			for k := range op.hist[tl] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				ap := &pb.AnalyticPartition{Timeline: tl, Analytic: int32(i), Partition: []byte(k), Martingale: op.hist[tl][k].m}
				for _, e := range op.hist[tl][k].entries {
					ap.Entries = append(ap.Entries, &pb.AnalyticEntry{Ts: e.ts, Value: value.ToProto(e.v)})
				}
				st.Analytics = append(st.Analytics, ap)
			}
		}
	}
}

func (s *analyticSet) restore(st *pb.StageState) error {
	if s == nil {
		if len(st.GetAnalytics()) > 0 {
			return fmt.Errorf("%w: analytic state for a stage without analytic functions", ErrBadSnapshot)
		}
		return nil
	}
	for _, op := range s.ops {
		op.hist = map[int32]map[string]*analyticHist{}
	}
	for _, ap := range st.GetAnalytics() {
		if ap.Analytic < 0 || int(ap.Analytic) >= len(s.ops) {
			return fmt.Errorf("%w: analytic %d out of range", ErrBadSnapshot, ap.Analytic)
		}
		op := s.ops[ap.Analytic]
		byKey := op.hist[ap.Timeline]
		if byKey == nil {
			byKey = map[string]*analyticHist{}
			op.hist[ap.Timeline] = byKey
		}
		h := &analyticHist{m: ap.Martingale}
		for _, e := range ap.Entries {
			h.entries = append(h.entries, analyticEntry{ts: e.Ts, v: value.FromProto(e.Value)})
		}
		byKey[string(ap.Partition)] = h
	}
	return nil
}

// use makes the results of an earlier eval (on the source row of an APPLY
// expansion) visible to ctx, or evaluates them when r was not expanded.
func (s *analyticSet) use(ctx *expr.Ctx, r *row) {
	if s == nil {
		return
	}
	if r.analyzed {
		ctx.Analytics = s.vals
		return
	}
	s.eval(ctx, r.tl)
}

// aggregate is an aggregate with OVER: the matching events of the
// partition within LIMIT DURATION, the current one included.
func (op *analyticOp) aggregate(ctx *expr.Ctx, h *analyticHist, matches bool, cur value.Value) value.Value {
	if matches {
		if op.value != nil {
			if _, _, _, err := numeric(cur); err != nil && op.agg.fn != pb.Aggregate_COUNT && op.agg.fn != pb.Aggregate_MIN && op.agg.fn != pb.Aggregate_MAX && !cur.IsNull() {
				return ctx.Fail(err)
			}
		}
		h.entries = append(h.entries, analyticEntry{ts: ctx.TS, v: cur})
	}
	spec := op.agg
	spec.arg = op.value
	var a acc
	var buf []byte
	for _, e := range h.entries {
		v := e.v
		if op.value == nil {
			v = value.Int(1) // COUNT(*): any non-NULL stands for the event
		}
		_ = a.add(&spec, v, nil, &buf)
	}
	return a.result(&spec)
}
