package plan

import (
	"strings"

	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

var matchAggFuncs = map[string]pb.MatchAggregate_Func{
	"first": pb.MatchAggregate_FIRST, "last": pb.MatchAggregate_LAST, "min": pb.MatchAggregate_MIN, "max": pb.MatchAggregate_MAX,
}

// matchRecognize plans MATCH_RECOGNIZE. Inside MEASURES and DEFINE,
// Var.field reads the field of the variable's last row (of the current row
// for the variable being defined), and First/Last/Min/Max(Var.field)
// aggregate over all of the variable's rows.
func (c *stageCtx) matchRecognize(m *sql.MatchRecognize) *pb.MatchRecognize {
	out := &pb.MatchRecognize{SkipPastLast: m.SkipPastLast}
	if len(m.Limit.Args) != 2 {
		c.b.failAt(m.Limit.P, "DURATION takes (unit, n)")
	}
	id, ok := m.Limit.Args[0].(*sql.Ident)
	if !ok {
		c.b.failAt(m.Limit.Args[0].Position(), "expected a time unit")
	}
	out.Duration = c.count(m.Limit.Args[1], c.unit(id))
	if out.Duration <= 0 || out.Duration > maxWindow {
		c.b.failAt(m.Limit.P, "LIMIT DURATION must be positive and at most 7 days")
	}
	for _, p := range m.PartitionBy {
		out.PartitionBy = append(out.PartitionBy, c.row(p))
	}
	c.mrVars = map[string]bool{}
	var collect func(p *sql.Pattern) *pb.PatternNode
	collect = func(p *sql.Pattern) *pb.PatternNode {
		n := &pb.PatternNode{Kind: pb.PatternNode_Kind(p.Kind), Var: p.Var, Min: int32(p.Min), Max: int32(p.Max)}
		if p.Kind == sql.PatVar {
			c.mrVars[strings.ToLower(p.Var)] = true
		}
		for _, it := range p.Items {
			n.Items = append(n.Items, collect(it))
		}
		return n
	}
	out.Pattern = collect(m.Pattern)
	c.mr = out
	defer func() { c.mrVars, c.mr = nil, nil }()
	for _, d := range m.Define {
		if !c.mrVars[strings.ToLower(d.Var)] {
			c.b.failAt(d.Pos, "DEFINE %s: %s is not a variable of the PATTERN", d.Var, d.Var)
		}
		out.Define = append(out.Define, &pb.MatchDefine{Var: d.Var, Cond: c.row(d.Cond)})
	}
	if len(m.Measures) == 0 {
		c.b.failAt(m.Pos, "MATCH_RECOGNIZE needs MEASURES")
	}
	for _, it := range m.Measures {
		out.Measures = append(out.Measures, &pb.Column{Name: it.Alias, Expr: c.row(it.Expr)})
	}
	return out
}

func (c *stageCtx) matchAggregate(x *sql.Call, fn pb.MatchAggregate_Func) *pb.Expr {
	if len(x.Args) != 1 || x.Star || x.Distinct || x.Over != nil {
		c.b.failAt(x.P, "%s takes one Variable.field argument in MATCH_RECOGNIZE", strings.ToUpper(x.Name))
	}
	varName := ""
	walk(x.Args[0], func(e sql.Expr) {
		if id, ok := e.(*sql.Ident); ok && len(id.Parts) > 1 && c.mrVars[strings.ToLower(id.Parts[0])] && varName == "" {
			varName = id.Parts[0]
		}
	})
	if varName == "" {
		c.b.failAt(x.Args[0].Position(), "%s needs a pattern variable, as in %s(Var.field)", strings.ToUpper(x.Name), x.Name)
	}
	c.mr.Aggregates = append(c.mr.Aggregates, &pb.MatchAggregate{Func: fn, Var: varName, Arg: c.row(x.Args[0])})
	return &pb.Expr{Kind: &pb.Expr_Aggregate{Aggregate: int32(len(c.mr.Aggregates) - 1)}}
}
