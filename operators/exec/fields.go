package exec

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// neededFields lists the top-level fields of an input that the plan reads,
// so the decoder can skip the rest (projection pushdown). all is true when
// some stage reads the whole record: SELECT *, alias.*, or an expression
// of the whole row (COLLECT(), TopOne(), CollectTop(n), the bare alias as
// in Collect(e) or GetRecordProperties(e)). It walks every message of
// the stages reading the input, so an expression anywhere (WHERE, APPLY,
// analytic functions, window keys...) is seen without being listed here.
func neededFields(p *pb.Plan, in *pb.Input) (fields []string, all bool) {
	seen := map[string]bool{}
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		switch x := m.Interface().(type) {
		case *pb.FieldRef:
			if len(x.Path) > 0 {
				if k := strings.ToLower(x.Path[0]); !seen[k] {
					seen[k] = true
					fields = append(fields, x.Path[0])
				}
			}
			return
		case *pb.Expr:
			if x.GetRow() {
				all = true // COLLECT(), TopOne(), CollectTop(n): the whole event
				return
			}
		case *pb.Wildcard:
			if len(x.Path) == 0 {
				all = true
			} else if k := strings.ToLower(x.Path[0]); !seen[k] {
				seen[k] = true
				fields = append(fields, x.Path[0])
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				visit(v.Message())
			}
			return true
		})
	}
	visit(in.ProtoReflect())
	for _, st := range p.Stages {
		if st.Match != nil && strings.EqualFold(st.Source, in.Name) {
			return nil, true // pattern variables read fields as Var.field
		}
		if st.Join != nil && strings.EqualFold(st.Join.Source, in.Name) {
			return nil, true // the right side of a join: keep everything
		}
		if strings.EqualFold(st.Source, in.Name) {
			visit(st.ProtoReflect())
		}
	}
	if all {
		return nil, true
	}
	if fields == nil {
		fields = []string{}
	}
	return fields, false
}
