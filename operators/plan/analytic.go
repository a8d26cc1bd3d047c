package plan

import (
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// analyticFuncs are evaluated on each row over the stream history before
// it (OVER LIMIT DURATION), unlike the aggregates of a GROUP BY window.
var analyticFuncs = map[string]pb.Analytic_Func{"lag": pb.Analytic_LAG, "last": pb.Analytic_LAST, "isfirst": pb.Analytic_ISFIRST,
	"anomalydetection_spikeanddip": pb.Analytic_SPIKE_AND_DIP, "anomalydetection_changepoint": pb.Analytic_CHANGE_POINT}

func containsAnalytic(e sql.Expr) bool {
	found := false
	walk(e, func(x sql.Expr) {
		if c, ok := x.(*sql.Call); ok {
			if _, an := analyticFuncs[strings.ToLower(c.Name)]; an {
				found = true
			}
		}
	})
	return found
}

// analytic plans LAG, LAST or ISFIRST. They are evaluated on every row that
// enters the stage, before WHERE, so they cannot stand in a per-group
// expression.
func (c *stageCtx) analytic(x *sql.Call, fn pb.Analytic_Func) *pb.Expr {
	name := strings.ToUpper(x.Name)
	if c.inGroup {
		c.b.failAt(x.P, "%s cannot be used in the SELECT list or HAVING of a GROUP BY statement: compute it in a WITH step first", name)
	}
	if x.Star || x.Distinct {
		c.b.failAt(x.P, "%s does not accept * or DISTINCT", name)
	}
	a := &pb.Analytic{Func: fn}
	over := x.Over
	switch fn {
	case pb.Analytic_ISFIRST:
		if len(x.Args) != 2 {
			c.b.failAt(x.P, "ISFIRST takes (unit, size)")
		}
		id, ok := x.Args[0].(*sql.Ident)
		if !ok {
			c.b.failAt(x.Args[0].Position(), "expected a time unit (day, hour, minute, second, millisecond, microsecond)")
		}
		a.Duration = c.count(x.Args[1], c.unit(id))
		if a.Duration <= 0 {
			c.b.failAt(x.Args[1].Position(), "the ISFIRST interval must be positive")
		}
		if over != nil && over.Limit != nil {
			c.b.failAt(over.P, "ISFIRST takes no LIMIT DURATION")
		}
	case pb.Analytic_SPIKE_AND_DIP, pb.Analytic_CHANGE_POINT:
		want := 3
		if fn == pb.Analytic_SPIKE_AND_DIP {
			want = 4
		}
		if len(x.Args) != want {
			c.b.failAt(x.P, "%s takes (value, confidence, historySize%s)", name, map[bool]string{true: ", mode", false: ""}[want == 4])
		}
		if containsAnalytic(x.Args[0]) || containsAggregate(x.Args[0]) {
			c.b.failAt(x.Args[0].Position(), "%s cannot contain aggregates or other analytic functions", name)
		}
		a.Value = c.row(x.Args[0])
		l, ok := x.Args[1].(*sql.Literal)
		var conf float64
		var err error
		if ok && l.Kind == sql.LitNumber {
			conf, err = strconv.ParseFloat(l.Text, 64)
		}
		if !ok || l.Kind != sql.LitNumber || err != nil || conf < 1 || conf > 100 {
			c.b.failAt(x.Args[1].Position(), "the confidence must be a number from 1 to 100")
		}
		hist, okH := intLit(x.Args[2])
		if !okH || hist < 3 || hist > 100000 {
			c.b.failAt(x.Args[2].Position(), "the history size must be a whole number from 3 to 100000")
		}
		a.Confidence, a.HistorySize = conf, hist
		if want == 4 {
			m, ok := x.Args[3].(*sql.Literal)
			mode := ""
			if ok && m.Kind == sql.LitString {
				mode = strings.ToLower(m.Text)
			}
			if mode != "spikes" && mode != "dips" && mode != "spikesanddips" {
				c.b.failAt(x.Args[3].Position(), "the mode must be 'spikes', 'dips' or 'spikesanddips'")
			}
			a.Mode = mode
		}
		a.Duration = c.limitDuration(x, name)
	default:
		maxArgs := 3
		if fn == pb.Analytic_LAST {
			maxArgs = 2
		}
		if len(x.Args) < 1 || len(x.Args) > maxArgs {
			c.b.failAt(x.P, "%s takes %s", name, map[pb.Analytic_Func]string{pb.Analytic_LAG: "(expression [, offset [, default]])", pb.Analytic_LAST: "(expression [, default])"}[fn])
		}
		if containsAnalytic(x.Args[0]) || containsAggregate(x.Args[0]) {
			c.b.failAt(x.Args[0].Position(), "%s cannot contain aggregates or other analytic functions", name)
		}
		a.Value = c.row(x.Args[0])
		rest := x.Args[1:]
		if fn == pb.Analytic_LAG {
			a.Offset = 1
			if len(rest) > 0 {
				l, ok := rest[0].(*sql.Literal)
				var n int64
				var err error
				if ok && l.Kind == sql.LitNumber {
					n, err = strconv.ParseInt(l.Text, 10, 64)
				}
				if !ok || l.Kind != sql.LitNumber || err != nil || n < 1 || n > 10000 {
					c.b.failAt(rest[0].Position(), "the LAG offset must be a whole number from 1 to 10000")
				}
				a.Offset = n
				rest = rest[1:]
			}
		}
		if len(rest) > 0 {
			a.Default = c.row(rest[0])
		}
		a.Duration = c.limitDuration(x, name)
	}
	if over != nil {
		for _, p := range over.PartitionBy {
			a.PartitionBy = append(a.PartitionBy, c.row(p))
		}
		if over.When != nil {
			if containsAnalytic(over.When) {
				c.b.failAt(over.When.Position(), "WHEN cannot contain analytic functions")
			}
			a.When = c.row(over.When)
		}
	}
	c.st.Analytics = append(c.st.Analytics, a)
	return &pb.Expr{Kind: &pb.Expr_Analytic{Analytic: int32(len(c.st.Analytics) - 1)}}
}

// overAggregate plans SUM(x) OVER (PARTITION BY ... LIMIT DURATION(...)
// [WHEN ...]) and the other aggregates with OVER: an analytic function.
func (c *stageCtx) overAggregate(x *sql.Call, fn pb.Aggregate_Func) *pb.Expr {
	name := strings.ToUpper(x.Name)
	if c.inGroup {
		c.b.failAt(x.P, "%s OVER cannot be used in the SELECT list or HAVING of a GROUP BY statement: compute it in a WITH step first", name)
	}
	if x.Distinct {
		c.b.failAt(x.P, "COUNT(DISTINCT) cannot be used with OVER")
	}
	a := &pb.Analytic{Func: pb.Analytic_AGGREGATE, Aggregate: fn}
	switch {
	case x.Star:
		if fn != pb.Aggregate_COUNT {
			c.b.failAt(x.P, "only COUNT accepts *")
		}
	case len(x.Args) != 1:
		c.b.failAt(x.P, "%s takes one argument", name)
	default:
		if containsAnalytic(x.Args[0]) || containsAggregate(x.Args[0]) {
			c.b.failAt(x.Args[0].Position(), "%s OVER cannot contain aggregates or analytic functions", name)
		}
		a.Value = c.row(x.Args[0])
	}
	over := x.Over
	a.Duration = c.limitDuration(x, name+" OVER")
	for _, p := range over.PartitionBy {
		a.PartitionBy = append(a.PartitionBy, c.row(p))
	}
	if over.When != nil {
		a.When = c.row(over.When)
	}
	c.st.Analytics = append(c.st.Analytics, a)
	return &pb.Expr{Kind: &pb.Expr_Analytic{Analytic: int32(len(c.st.Analytics) - 1)}}
}

// limitDuration reads OVER (... LIMIT DURATION(unit, n) ...) in ticks.
func (c *stageCtx) limitDuration(x *sql.Call, name string) int64 {
	over := x.Over
	if over == nil || over.Limit == nil || len(over.Limit.Args) != 2 {
		c.b.failAt(x.P, "%s needs OVER (LIMIT DURATION(unit, n))", name)
	}
	id, ok := over.Limit.Args[0].(*sql.Ident)
	if !ok {
		c.b.failAt(over.Limit.Args[0].Position(), "expected a time unit (day, hour, minute, second, millisecond, microsecond)")
	}
	d := c.count(over.Limit.Args[1], c.unit(id))
	if d <= 0 {
		c.b.failAt(over.Limit.P, "LIMIT DURATION must be positive")
	}
	return d
}
