package exec

import (
	"fmt"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// applyNode runs CROSS/OUTER APPLY in front of a stage: every source row
// becomes one row per array element (GetArrayElements) or record field
// (GetRecordProperties), with the APPLY alias as an extra field holding
// {ArrayIndex, ArrayValue} or {PropertyName, PropertyValue}.
type applyNode struct {
	ex      *Executor
	stage   string
	applies []compiledApply
	next    node
	an      *analyticSet
	ctx     expr.Ctx
	recs    []value.Record // one reused record per APPLY level
	r       row
}

type compiledApply struct {
	fn    pb.Apply_Func
	arg   expr.Eval
	alias string
	outer bool
}

var (
	arrayNames  = []string{"ArrayIndex", "ArrayValue"}
	recordNames = []string{"PropertyName", "PropertyValue"}
)

func newApplyNode(ex *Executor, st *pb.Stage, next node, an *analyticSet) (*applyNode, error) {
	n := &applyNode{ex: ex, stage: st.Name, next: next, an: an, recs: make([]value.Record, len(st.Applies))}
	for _, a := range st.Applies {
		e, err := ex.compile(a.Arg)
		if err != nil {
			return nil, fmt.Errorf("APPLY: %w", err)
		}
		if a.Func != pb.Apply_GET_ARRAY_ELEMENTS && a.Func != pb.Apply_GET_RECORD_PROPERTIES {
			return nil, fmt.Errorf("%w: APPLY function %v", ErrBadPlan, a.Func)
		}
		n.applies = append(n.applies, compiledApply{fn: a.Func, arg: e, alias: a.Alias, outer: a.Outer})
	}
	return n, nil
}

func (n *applyNode) advance(tl int32, wm int64) { n.next.advance(tl, wm) }

// push evaluates the stage's analytic functions on the source row first:
// they see every event of the step's input, before APPLY, like before a
// join or WHERE.
func (n *applyNode) push(r *row) {
	if n.an != nil {
		n.ctx = expr.Ctx{Rec: r.rec, TS: r.ts, Meta: r.meta}
		n.an.eval(&n.ctx, r.tl)
		if n.ctx.Err != nil {
			n.ex.stageError(n.stage, r.rec, "analytic function", n.ctx.Err)
			return
		}
	}
	n.expand(0, r)
}

func (n *applyNode) expand(level int, r *row) {
	if level == len(n.applies) {
		n.next.push(r)
		return
	}
	a := &n.applies[level]
	n.ctx = expr.Ctx{Rec: r.rec, TS: r.ts, Meta: r.meta}
	v := a.arg(&n.ctx)
	if n.ctx.Err != nil {
		n.ex.stageError(n.stage, r.rec, "APPLY", n.ctx.Err)
		return
	}
	out := &n.recs[level]
	emit := func(elem value.Value) {
		// Names and values are rebuilt per element: a receiver may not keep
		// the record (X3), but the element value itself is new and may be kept.
		out.Names = append(append(out.Names[:0], r.rec.Names...), a.alias)
		out.Vals = append(append(out.Vals[:0], r.rec.Vals...), elem)
		child := row{ts: r.ts, tl: r.tl, rec: out, analyzed: true}
		n.expand(level+1, &child)
	}
	count := 0
	switch a.fn {
	case pb.Apply_GET_ARRAY_ELEMENTS:
		if arr := v.Array(); arr != nil {
			for i, it := range arr.Items {
				emit(value.RecordValue(&value.Record{Names: arrayNames, Vals: []value.Value{value.Int(int64(i)), it}}))
				count++
			}
		} else if !v.IsNull() {
			n.ex.stageError(n.stage, r.rec, "APPLY", fmt.Errorf("%w: GetArrayElements needs an array, not %s", expr.ErrType, v.Kind()))
			return
		}
	case pb.Apply_GET_RECORD_PROPERTIES:
		if rec := v.Record(); rec != nil {
			for i, name := range rec.Names {
				emit(value.RecordValue(&value.Record{Names: recordNames, Vals: []value.Value{value.Str(name), rec.Vals[i]}}))
				count++
			}
		} else if !v.IsNull() {
			n.ex.stageError(n.stage, r.rec, "APPLY", fmt.Errorf("%w: GetRecordProperties needs a record, not %s", expr.ErrType, v.Kind()))
			return
		}
	}
	if count == 0 && a.outer {
		emit(value.Value{})
	}
}
