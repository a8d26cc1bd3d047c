package exec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// projection is one compiled SELECT item.
type projection struct {
	name     string
	eval     expr.Eval
	wildcard bool
	path     []string
}

func compileProjections(ex *Executor, ps []*pb.Projection) ([]projection, bool, error) {
	out := make([]projection, 0, len(ps))
	dynamic := false
	for _, p := range ps {
		switch k := p.Kind.(type) {
		case *pb.Projection_Column:
			e, err := ex.compile(k.Column.Expr)
			if err != nil {
				return nil, false, fmt.Errorf("column %q: %w", k.Column.Name, err)
			}
			out = append(out, projection{name: k.Column.Name, eval: e})
		case *pb.Projection_Wildcard:
			out = append(out, projection{wildcard: true, path: k.Wildcard.Path})
			dynamic = true
		default:
			return nil, false, fmt.Errorf("%w: empty projection", ErrBadPlan)
		}
	}
	return out, dynamic, nil
}

// project builds the output record of one row into dst (reused).
func project(dst *value.Record, names []string, ps []projection, dynamic bool, ctx *expr.Ctx) {
	dst.Vals = dst.Vals[:0]
	if !dynamic {
		dst.Names = names
		for i := range ps {
			dst.Vals = append(dst.Vals, ps[i].eval(ctx))
		}
		return
	}
	// A dynamic stage never points dst.Names at a static slice, so its own
	// buffer can be reused (receivers copy what they keep, X3).
	dst.Names = dst.Names[:0]
	for i := range ps {
		p := &ps[i]
		if !p.wildcard {
			if dst.Index(p.name) < 0 {
				dst.Names = append(dst.Names, p.name)
				dst.Vals = append(dst.Vals, p.eval(ctx))
			}
			continue
		}
		src := ctx.Rec
		for _, part := range p.path {
			if src == nil {
				break
			}
			v, _ := src.Get(part)
			src = v.Record()
		}
		if src == nil {
			continue
		}
		// Left wins on name collisions.
		for j, n := range src.Names {
			if dst.Index(n) < 0 {
				dst.Names = append(dst.Names, n)
				dst.Vals = append(dst.Vals, src.Vals[j])
			}
		}
	}
}

func staticNames(ps []projection) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return names
}

func newStage(ex *Executor, st *pb.Stage) (stageNode, error) {
	where, err := ex.compileOpt(st.Where)
	if err != nil {
		return nil, fmt.Errorf("WHERE: %w", err)
	}
	ps, dynamic, err := compileProjections(ex, st.Projections)
	if err != nil {
		return nil, err
	}
	if st.Window == nil {
		if len(st.Aggregates) > 0 || len(st.GroupKeys) > 0 || st.Having != nil {
			return nil, fmt.Errorf("%w: grouping without a window", ErrBadPlan)
		}
		an, err := newAnalyticSet(ex, st.Analytics)
		if err != nil {
			return nil, err
		}
		return &selectOp{ex: ex, name: st.Name, where: where, proj: ps, dynamic: dynamic, names: staticNames(ps), an: an}, nil
	}
	if dynamic {
		return nil, fmt.Errorf("%w: SELECT * with GROUP BY", ErrBadPlan)
	}
	return newAggOp(ex, st, where, ps)
}

// selectOp is a stage without GROUP BY: filter and projection.
type selectOp struct {
	ex      *Executor
	name    string
	where   expr.Eval
	proj    []projection
	dynamic bool
	names   []string
	an      *analyticSet
	timing  stageTiming
	out     []node
	ctx     expr.Ctx
	rec     value.Record
	r       row
}

func (s *selectOp) analytics() *analyticSet { return s.an }
func (op *aggOp) analytics() *analyticSet   { return op.an }
func (u *unionOp) analytics() *analyticSet  { return nil }

func (s *selectOp) stageName() string { return s.name }
func (s *selectOp) addOut(n node)     { s.out = append(s.out, n) }
func (s *selectOp) snapshot() *pb.StageState {
	if s.an == nil {
		return nil
	}
	st := &pb.StageState{Name: s.name}
	s.an.snapshot(st)
	return st
}

func (s *selectOp) restore(st *pb.StageState) error { return s.an.restore(st) }
func (s *selectOp) advance(tl int32, wm int64) {
	for _, n := range s.out {
		n.advance(tl, wm)
	}
}

func (s *selectOp) push(r *row) {
	if s.timing.sample() {
		t0 := time.Now()
		s.pushRow(r)
		s.ex.stageTime(s.name, &s.timing, time.Since(t0))
		return
	}
	s.pushRow(r)
}

func (s *selectOp) pushRow(r *row) {
	if !s.ex.admit(s.name, &s.ctx, s.an, s.where, r) {
		return
	}
	project(&s.rec, s.names, s.proj, s.dynamic, &s.ctx)
	if s.ctx.Err != nil {
		s.ex.stageError(s.name, r.rec, "SELECT", s.ctx.Err)
		return
	}
	s.r = row{ts: r.ts, tl: r.tl, rec: &s.rec}
	for _, n := range s.out {
		n.push(&s.r)
	}
}

// admit prepares ctx for a row entering a stage, runs the stage's analytic
// functions (which see every row, X-before-WHERE) and its WHERE; it reports
// whether the row goes on. Failures are dead-lettered.
func (ex *Executor) admit(stage string, ctx *expr.Ctx, an *analyticSet, where expr.Eval, r *row) bool {
	*ctx = expr.Ctx{Rec: r.rec, TS: r.ts, Meta: r.meta}
	an.use(ctx, r)
	if ctx.Err != nil {
		ex.stageError(stage, r.rec, "analytic function", ctx.Err)
		return false
	}
	if where == nil {
		return true
	}
	keep := expr.Truth(where(ctx))
	if ctx.Err != nil {
		ex.stageError(stage, r.rec, "WHERE", ctx.Err)
		return false
	}
	return keep
}

func (ex *Executor) stageError(stage string, rec *value.Record, clause string, err error) {
	kind := DeadLetterExpression
	if errors.Is(err, expr.ErrUDF) {
		kind = DeadLetterUDF
	}
	ex.deadLetter(DeadLetter{Stage: stage, Kind: kind, Reason: fmt.Sprintf("%s: %v", clause, err), Payload: value.AppendRecordJSON(nil, rec)})
}

// aggOp is a stage with GROUP BY and a window.
type aggOp struct {
	ex       *Executor
	name     string
	where    expr.Eval
	keys     []expr.Eval
	parts    []expr.Eval // session PARTITION BY
	aggs     []aggSpec
	having   expr.Eval
	proj     []projection
	names    []string
	win      *pb.Window
	an       *analyticSet
	timing   stageTiming
	tls      []winState
	out      []node
	ctx      expr.Ctx
	keyBuf   []byte
	partBuf  []byte
	distBuf  []byte
	keyVals  []value.Value
	argVals  []value.Value
	aggVals  []value.Value
	rec      value.Record
	r        row
	numericA []bool // aggregates whose argument must be a number
	// orderVals[i] are the OVER (ORDER BY) keys of aggregate i for the
	// current row.
	orderVals [][]value.Value
}

// winState is the window state of one timeline.
type winState interface {
	// add folds a row into the window state; rows come in time order.
	add(ts int64, key []byte, part []byte) error
	// close emits every window that ends before wm.
	close(wm int64)
	toProto() *pb.WindowTimeline
	fromProto(*pb.WindowTimeline) error
}

func newAggOp(ex *Executor, st *pb.Stage, where expr.Eval, ps []projection) (*aggOp, error) {
	op := &aggOp{ex: ex, name: st.Name, where: where, proj: ps, names: staticNames(ps), win: st.Window}
	for _, k := range st.GroupKeys {
		e, err := ex.compile(k)
		if err != nil {
			return nil, fmt.Errorf("GROUP BY: %w", err)
		}
		op.keys = append(op.keys, e)
	}
	for _, k := range st.Window.PartitionBy {
		e, err := ex.compile(k)
		if err != nil {
			return nil, fmt.Errorf("PARTITION BY: %w", err)
		}
		op.parts = append(op.parts, e)
	}
	for _, a := range st.Aggregates {
		spec := aggSpec{fn: a.Func, distinct: a.Distinct, topN: int(a.TopN), percentile: a.Percentile}
		if a.Func == pb.Aggregate_UDA {
			f := ex.udfs["uda."+strings.ToLower(a.Udf)]
			if f == nil || !f.Aggregate() {
				return nil, fmt.Errorf("%w: uda.%s is not declared as an aggregate in the job's functions", ErrBadPlan, a.Udf)
			}
			spec.uda = f
			spec.orderBy, spec.desc = []expr.Eval{udaTime}, []bool{false}
		}
		for _, o := range a.OrderBy {
			e, err := ex.compile(o.Expr)
			if err != nil {
				return nil, fmt.Errorf("aggregate ORDER BY: %w", err)
			}
			spec.orderBy = append(spec.orderBy, e)
			spec.desc = append(spec.desc, o.Desc)
		}
		if a.Arg != nil {
			e, err := ex.compile(a.Arg)
			if err != nil {
				return nil, fmt.Errorf("aggregate: %w", err)
			}
			spec.arg = e
		} else if a.Func != pb.Aggregate_COUNT {
			return nil, fmt.Errorf("%w: %s without an argument", ErrBadPlan, a.Func)
		}
		op.aggs = append(op.aggs, spec)
		op.numericA = append(op.numericA, a.Arg != nil && !spec.keepsItems() && a.Func != pb.Aggregate_COUNT && a.Func != pb.Aggregate_MIN && a.Func != pb.Aggregate_MAX ||
			a.Func == pb.Aggregate_PERCENTILE_CONT)
		op.orderVals = append(op.orderVals, make([]value.Value, len(spec.orderBy)))
	}
	var err error
	if op.an, err = newAnalyticSet(ex, st.Analytics); err != nil {
		return nil, err
	}
	if op.having, err = ex.compileOpt(st.Having); err != nil {
		return nil, fmt.Errorf("HAVING: %w", err)
	}
	op.keyVals = make([]value.Value, len(op.keys))
	op.argVals = make([]value.Value, len(op.aggs))
	op.aggVals = make([]value.Value, len(op.aggs))
	w := st.Window
	switch w.Kind {
	case pb.Window_TUMBLING, pb.Window_HOPPING, pb.Window_SNAPSHOT:
		if w.Size <= 0 || w.Hop <= 0 || w.Hop > w.Size {
			return nil, fmt.Errorf("%w: window size %d and hop %d", ErrBadPlan, w.Size, w.Hop)
		}
	case pb.Window_SLIDING:
		if w.Size <= 0 {
			return nil, fmt.Errorf("%w: sliding window size %d", ErrBadPlan, w.Size)
		}
	case pb.Window_SESSION:
		if w.Timeout <= 0 || w.MaxDuration < w.Timeout {
			return nil, fmt.Errorf("%w: session timeout %d, max duration %d", ErrBadPlan, w.Timeout, w.MaxDuration)
		}
	default:
		return nil, fmt.Errorf("%w: unknown window kind %v", ErrBadPlan, w.Kind)
	}
	return op, nil
}

func (op *aggOp) stageName() string { return op.name }
func (op *aggOp) addOut(n node)     { op.out = append(op.out, n) }

func (op *aggOp) newState() winState {
	w := op.win
	switch w.Kind {
	case pb.Window_SLIDING:
		return &slidingState{op: op, size: w.Size}
	case pb.Window_SESSION:
		return &sessionState{op: op, timeout: w.Timeout, maxDur: w.MaxDuration, sessions: map[string]*session{}}
	}
	return newPaneState(op, w.Size, w.Hop, w.Offset)
}

func (op *aggOp) state(tl int32) winState {
	for int(tl) >= len(op.tls) {
		op.tls = append(op.tls, nil)
	}
	if op.tls[tl] == nil {
		op.tls[tl] = op.newState()
	}
	return op.tls[tl]
}

func (op *aggOp) push(r *row) {
	if op.timing.sample() {
		t0 := time.Now()
		op.pushRow(r)
		op.ex.stageTime(op.name, &op.timing, time.Since(t0))
		return
	}
	op.pushRow(r)
}

func (op *aggOp) pushRow(r *row) {
	if !op.ex.admit(op.name, &op.ctx, op.an, op.where, r) {
		return
	}
	op.keyBuf = op.keyBuf[:0]
	for i, k := range op.keys {
		op.keyVals[i] = k(&op.ctx)
		op.keyBuf = value.AppendKey(op.keyBuf, op.keyVals[i])
	}
	op.partBuf = op.partBuf[:0]
	for _, p := range op.parts {
		op.partBuf = value.AppendKey(op.partBuf, p(&op.ctx))
	}
	for i := range op.aggs {
		if a := op.aggs[i].arg; a != nil {
			op.argVals[i] = a(&op.ctx)
		}
		for k, o := range op.aggs[i].orderBy {
			op.orderVals[i][k] = o(&op.ctx)
		}
	}
	if op.ctx.Err != nil {
		op.ex.stageError(op.name, r.rec, "GROUP BY", op.ctx.Err)
		return
	}
	for i, v := range op.argVals {
		if op.numericA[i] && !v.IsNull() {
			if _, _, _, err := numeric(v); err != nil {
				op.ex.stageError(op.name, r.rec, "aggregate", err)
				return
			}
		}
	}
	st := op.state(r.tl)
	op.r.tl = r.tl
	st.close(r.ts)
	if err := st.add(r.ts, op.keyBuf, op.partBuf); err != nil {
		op.ex.stageError(op.name, r.rec, "aggregate", err)
	}
}

func (op *aggOp) advance(tl int32, wm int64) {
	if tl >= 0 {
		if int(tl) < len(op.tls) && op.tls[tl] != nil {
			op.r.tl = tl
			op.tls[tl].close(wm)
		}
	} else {
		for i, st := range op.tls {
			if st != nil {
				op.r.tl = int32(i)
				st.close(wm)
			}
		}
	}
	for _, n := range op.out {
		n.advance(tl, wm)
	}
}

// newGroup makes a group for the current row's key values.
func (op *aggOp) newGroup(seq uint64) *group {
	g := &group{key: make([]value.Value, len(op.keyVals)), accs: make([]acc, len(op.aggs)), seq: seq}
	for i, v := range op.keyVals {
		g.key[i] = v.Clone()
	}
	return g
}

// fold adds the current row's argument values to g.
func (op *aggOp) fold(g *group) error {
	for i := range op.aggs {
		if err := g.accs[i].add(&op.aggs[i], op.argVals[i], op.orderVals[i], &op.distBuf); err != nil {
			return err
		}
	}
	return nil
}

// emit evaluates HAVING and the projection for one group of a closed
// window ending at ts, and pushes the row downstream.
func (op *aggOp) emit(ts int64, key []value.Value, accs []acc) {
	for i := range op.aggs {
		if op.aggs[i].uda == nil {
			op.aggVals[i] = accs[i].result(&op.aggs[i])
			continue
		}
		v, err := accs[i].udaResult(&op.aggs[i])
		if err != nil {
			op.aggVals[i] = value.Value{}
			op.ex.stageError(op.name, op.groupRecord(key), "uda."+op.aggs[i].uda.Name(),
				fmt.Errorf("%w: uda.%s: %w", expr.ErrUDF, op.aggs[i].uda.Name(), err))
			return
		}
		op.aggVals[i] = v
	}
	op.ctx = expr.Ctx{TS: ts, Keys: key, Aggs: op.aggVals}
	if op.having != nil {
		keep := expr.Truth(op.having(&op.ctx))
		if op.ctx.Err != nil {
			op.ex.stageError(op.name, op.groupRecord(key), "HAVING", op.ctx.Err)
			return
		}
		if !keep {
			return
		}
	}
	project(&op.rec, op.names, op.proj, false, &op.ctx)
	if op.ctx.Err != nil {
		op.ex.stageError(op.name, op.groupRecord(key), "SELECT", op.ctx.Err)
		return
	}
	op.r.ts, op.r.rec = ts, &op.rec
	for _, n := range op.out {
		n.push(&op.r)
	}
}

func (op *aggOp) groupRecord(key []value.Value) *value.Record {
	r := &value.Record{}
	for i, k := range key {
		r.Names = append(r.Names, fmt.Sprintf("key%d", i+1))
		r.Vals = append(r.Vals, k)
	}
	for i, a := range op.aggVals {
		r.Names = append(r.Names, strings.ToLower(op.aggs[i].fn.String()))
		r.Vals = append(r.Vals, a)
	}
	return r
}

func (op *aggOp) snapshot() *pb.StageState {
	s := &pb.StageState{Name: op.name}
	op.an.snapshot(s)
	for i, st := range op.tls {
		if st == nil {
			continue
		}
		wt := st.toProto()
		wt.Timeline = int32(i)
		s.Timelines = append(s.Timelines, wt)
	}
	return s
}

func (op *aggOp) restore(s *pb.StageState) error {
	if err := op.an.restore(s); err != nil {
		return err
	}
	op.tls = nil
	for _, wt := range s.GetTimelines() {
		if wt.Timeline < 0 || wt.Timeline > 1<<24 {
			return fmt.Errorf("%w: timeline %d", ErrBadSnapshot, wt.Timeline)
		}
		st := op.state(wt.Timeline)
		if err := st.fromProto(wt); err != nil {
			return err
		}
	}
	return nil
}

// stageTiming samples the time of one push in 256: cheap enough for the hot
// path, enough samples for a per-stage mean. The time includes the stages
// downstream that the push runs synchronously.
type stageTiming struct {
	n       uint64
	samples int64
	total   time.Duration
}

func (t *stageTiming) sample() bool {
	t.n++
	return t.n&255 == 0
}

func (t *stageTiming) add(d time.Duration) {
	t.samples++
	t.total += d
}

// stageTime records a sampled row time of a stage.
func (ex *Executor) stageTime(stage string, t *stageTiming, d time.Duration) {
	t.add(d)
	if f := ex.opts.StageTime; f != nil {
		f(stage, d)
	}
}

func (t *stageTiming) mean() (time.Duration, bool) {
	if t.samples == 0 {
		return 0, false
	}
	return t.total / time.Duration(t.samples), true
}
