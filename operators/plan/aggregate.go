package plan

import (
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

var aggregateFuncs = map[string]pb.Aggregate_Func{
	"count": pb.Aggregate_COUNT, "sum": pb.Aggregate_SUM, "avg": pb.Aggregate_AVG,
	"min": pb.Aggregate_MIN, "max": pb.Aggregate_MAX, "stdev": pb.Aggregate_STDEV,
	"stdevp": pb.Aggregate_STDEVP, "var": pb.Aggregate_VAR, "varp": pb.Aggregate_VARP,
	"collect": pb.Aggregate_COLLECT, "collecttop": pb.Aggregate_COLLECT_TOP, "topone": pb.Aggregate_TOP_ONE,
	"percentile_cont": pb.Aggregate_PERCENTILE_CONT, "percentile_disc": pb.Aggregate_PERCENTILE_DISC,
}

// groupAggFunc names the aggregate a call is: a built-in one or a
// JavaScript UDA (uda.name).
func groupAggFunc(name string) (pb.Aggregate_Func, bool) {
	name = strings.ToLower(name)
	if strings.HasPrefix(name, "uda.") && len(name) > len("uda.") {
		return pb.Aggregate_UDA, true
	}
	fn, ok := aggregateFuncs[name]
	return fn, ok
}

// isGroupAggregate: an aggregate of GROUP BY, not an analytic aggregate.
// OVER (ORDER BY ...) only orders CollectTop, TopOne and the percentiles.
func isGroupAggregate(c *sql.Call) bool {
	if _, ok := groupAggFunc(c.Name); !ok {
		return false
	}
	o := c.Over
	return o == nil || (len(o.PartitionBy) == 0 && o.Limit == nil && o.When == nil && len(o.OrderBy) > 0)
}

func containsAggregate(e sql.Expr) bool {
	found := false
	walk(e, func(x sql.Expr) {
		if c, ok := x.(*sql.Call); ok {
			if isGroupAggregate(c) {
				found = true
			}
		}
	})
	return found
}

// group converts an expression evaluated once per group: group keys,
// aggregates and System.Timestamp() only (L2).
func (c *stageCtx) group(e sql.Expr, having bool) *pb.Expr {
	c.inGroup = true
	defer func() { c.inGroup = false }()
	var hook func(x sql.Expr) *pb.Expr
	hook = func(x sql.Expr) *pb.Expr {
		if containsAnalytic(x) {
			return nil // reported by convertCall
		}
		if call, ok := x.(*sql.Call); ok {
			if isGroupAggregate(call) {
				fn, _ := groupAggFunc(call.Name)
				return c.aggregate(call, fn)
			}
		}
		if _, isLit := x.(*sql.Literal); isLit {
			return nil
		}
		if call, ok := x.(*sql.Call); ok && strings.EqualFold(call.Name, "system.timestamp") {
			return nil
		}
		// A whole expression equal to a group key.
		if containsAggregate(x) {
			return nil
		}
		converted := c.row(x)
		k := exprKey(converted)
		for i, gk := range c.groupKeys {
			if gk == k {
				return &pb.Expr{Kind: &pb.Expr_GroupKey{GroupKey: int32(i)}}
			}
		}
		if id, ok := x.(*sql.Ident); ok {
			if having && len(id.Parts) == 1 {
				if a, ok := c.aliases[strings.ToLower(id.Parts[0])]; ok {
					return a
				}
			}
			c.b.failAt(id.P, "%s is neither in GROUP BY nor inside an aggregate", id)
		}
		return nil
	}
	return c.convert(e, hook)
}

func (c *stageCtx) aggregate(call *sql.Call, fn pb.Aggregate_Func) *pb.Expr {
	name := strings.ToUpper(call.Name)
	a := &pb.Aggregate{Func: fn, Distinct: call.Distinct}
	args := call.Args
	ordered := fn == pb.Aggregate_COLLECT_TOP || fn == pb.Aggregate_TOP_ONE || fn == pb.Aggregate_PERCENTILE_CONT || fn == pb.Aggregate_PERCENTILE_DISC
	if ordered != (call.Over != nil) {
		if ordered {
			c.b.failAt(call.P, "%s needs OVER (ORDER BY ...)", name)
		}
		c.b.failAt(call.Over.P, "%s takes no OVER (ORDER BY ...)", name)
	}
	if call.Over != nil {
		for _, o := range call.Over.OrderBy {
			if containsAggregate(o.Expr) {
				c.b.failAt(o.Expr.Position(), "aggregates cannot be nested")
			}
			a.OrderBy = append(a.OrderBy, &pb.OrderKey{Expr: c.row(o.Expr), Desc: o.Desc})
		}
	}
	switch fn {
	case pb.Aggregate_UDA:
		a.Udf = strings.ToLower(call.Name[len("uda."):])
		if call.Star || len(args) != 1 {
			c.b.failAt(call.P, "%s takes one argument (a value or the input's alias for the whole event)", call.Name)
		}
		if id, ok := args[0].(*sql.Ident); ok && len(id.Parts) == 1 && !id.Quoted &&
			(strings.EqualFold(id.Parts[0], c.alias) || strings.EqualFold(id.Parts[0], c.sourceName)) {
			// uda.TWA(value) over FROM value: the whole event, as the
			// Stream Analytics sample passes it.
			a.Arg, args = &pb.Expr{Kind: &pb.Expr_Row{Row: true}}, nil
		}
	case pb.Aggregate_COLLECT_TOP:
		if len(args) < 1 || len(args) > 2 {
			c.b.failAt(call.P, "CollectTop takes (n [, value])")
		}
		n, ok := intLit(args[0])
		if !ok || n < 1 || n > 10000 {
			c.b.failAt(args[0].Position(), "the CollectTop count must be a whole number from 1 to 10000")
		}
		a.TopN = n
		args = args[1:]
	case pb.Aggregate_PERCENTILE_CONT, pb.Aggregate_PERCENTILE_DISC:
		if len(args) != 1 {
			c.b.failAt(call.P, "%s takes one number from 0 to 1", name)
		}
		l, ok := args[0].(*sql.Literal)
		if !ok || l.Kind != sql.LitNumber {
			c.b.failAt(args[0].Position(), "%s takes one number from 0 to 1", name)
		}
		p, err := strconv.ParseFloat(l.Text, 64)
		if err != nil || p < 0 || p > 1 {
			c.b.failAt(l.P, "%s takes one number from 0 to 1", name)
		}
		if len(a.OrderBy) != 1 {
			c.b.failAt(call.Over.P, "%s orders by exactly one value", name)
		}
		a.Percentile, args = p, nil
		a.Arg = a.OrderBy[0].Expr
	}
	switch {
	case fn == pb.Aggregate_PERCENTILE_CONT || fn == pb.Aggregate_PERCENTILE_DISC:
	case fn == pb.Aggregate_UDA && a.Arg != nil:
	case call.Star:
		if fn != pb.Aggregate_COUNT {
			c.b.failAt(call.P, "only COUNT accepts *")
		}
	case len(args) == 0 && (fn == pb.Aggregate_COLLECT || fn == pb.Aggregate_COLLECT_TOP || fn == pb.Aggregate_TOP_ONE):
		a.Arg = &pb.Expr{Kind: &pb.Expr_Row{Row: true}}
	case len(args) != 1:
		c.b.failAt(call.P, "%s takes one argument", name)
	default:
		if containsAggregate(args[0]) {
			c.b.failAt(args[0].Position(), "aggregates cannot be nested")
		}
		a.Arg = c.row(args[0])
	}
	if a.Distinct && fn != pb.Aggregate_COUNT {
		c.b.failAt(call.P, "DISTINCT is only supported in COUNT")
	}
	k := string(mustMarshal(a))
	for i, prev := range c.aggKeys {
		if prev == k {
			return &pb.Expr{Kind: &pb.Expr_Aggregate{Aggregate: int32(i)}}
		}
	}
	c.aggKeys = append(c.aggKeys, k)
	c.st.Aggregates = append(c.st.Aggregates, a)
	return &pb.Expr{Kind: &pb.Expr_Aggregate{Aggregate: int32(len(c.st.Aggregates) - 1)}}
}
