package exec

import (
	"strings"

	"github.com/millstream/millstream/operators/expr"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// neededFields lists the top-level fields of an input that the plan reads,
// so the decoder can skip the rest (projection pushdown). all is true when
// some stage reads the whole record (SELECT *).
func neededFields(p *pb.Plan, in *pb.Input) (fields []string, all bool) {
	seen := map[string]bool{}
	add := func(name string) {
		if k := strings.ToLower(name); !seen[k] {
			seen[k] = true
			fields = append(fields, name)
		}
	}
	walk := func(e *pb.Expr) {
		expr.Walk(e, func(x *pb.Expr) {
			if f := x.GetField(); f != nil && len(f.Path) > 0 {
				add(f.Path[0])
			}
		})
	}
	walk(in.TimestampBy)
	for _, o := range in.Over {
		walk(o)
	}
	for _, st := range p.Stages {
		if !strings.EqualFold(st.Source, in.Name) {
			continue
		}
		walk(st.Where)
		walk(st.Having)
		for _, k := range st.GroupKeys {
			walk(k)
		}
		for _, a := range st.Aggregates {
			walk(a.Arg)
		}
		if st.Window != nil {
			for _, k := range st.Window.PartitionBy {
				walk(k)
			}
		}
		for _, pr := range st.Projections {
			switch k := pr.Kind.(type) {
			case *pb.Projection_Column:
				walk(k.Column.Expr)
			case *pb.Projection_Wildcard:
				if len(k.Wildcard.Path) == 0 {
					return nil, true
				}
				add(k.Wildcard.Path[0])
			}
		}
	}
	if fields == nil {
		fields = []string{}
	}
	return fields, false
}
