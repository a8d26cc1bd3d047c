package config

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/udf"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// JobPlan is the plan a job runs: its query planned (or its plan, copied),
// with the job's functions and its inputs' iothub_properties. Every
// function must load, and every udf.x / uda.x the query calls must be
// declared with the right kind; all problems are reported together.
func JobPlan(j *pb.Job) (*pb.Plan, error) {
	var p *pb.Plan
	if j.Plan != nil {
		p = proto.Clone(j.Plan).(*pb.Plan)
	} else {
		var err error
		if p, err = plan.FromSQL(j.Query); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
	}
	if len(j.Functions) > 0 {
		p.Functions = j.Functions
	}
	for _, in := range j.Inputs {
		if !in.IothubProperties {
			continue
		}
		for _, pi := range p.Inputs {
			if strings.EqualFold(pi.Name, in.Name) {
				pi.IothubProperties = true
			}
		}
	}
	if err := checkFunctions(p); err != nil {
		return nil, err
	}
	return p, nil
}

// checkFunctions loads each function once and matches the calls.
func checkFunctions(p *pb.Plan) error {
	var errs []error
	declared := map[string]pb.Function_Kind{}
	for _, fn := range p.Functions {
		kind := fn.Kind
		if kind == pb.Function_KIND_UNSPECIFIED {
			kind = pb.Function_SCALAR
		}
		key := strings.ToLower(fn.Name)
		if _, dup := declared[key]; dup {
			errs = append(errs, fmt.Errorf("%w: function %q is declared twice", ErrInvalid, fn.Name))
			continue
		}
		declared[key] = kind
		if _, err := udf.Compile(fn); err != nil {
			errs = append(errs, fmt.Errorf("%w: function %q: %w", ErrInvalid, fn.Name, err))
		}
	}
	need := func(name string, kind pb.Function_Kind) {
		if k, ok := declared[name]; !ok || k != kind {
			prefix, what := "udf.", "a function"
			if kind == pb.Function_AGGREGATE {
				prefix, what = "uda.", "an aggregate (kind: aggregate)"
			}
			errs = append(errs, fmt.Errorf("%w: the query calls %s%s: declare it in the job's functions as %s", ErrInvalid, prefix, name, what))
		}
	}
	visit := func(e *pb.Expr) {
		expr.Walk(e, func(x *pb.Expr) {
			if c := x.GetCall(); c != nil && strings.HasPrefix(c.Func, "udf.") {
				need(strings.TrimPrefix(c.Func, "udf."), pb.Function_SCALAR)
			}
		})
	}
	for _, st := range p.Stages {
		for _, a := range st.Aggregates {
			if a.Func == pb.Aggregate_UDA {
				need(strings.ToLower(a.Udf), pb.Function_AGGREGATE)
			}
			visit(a.Arg)
		}
		visit(st.Where)
		visit(st.Having)
		for _, pr := range st.Projections {
			if c := pr.GetColumn(); c != nil {
				visit(c.Expr)
			}
		}
	}
	return errors.Join(errs...)
}
