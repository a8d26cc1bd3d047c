package plan

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/sql"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// DefaultOutput is the output name of a SELECT without INTO.
const DefaultOutput = "output"

// Error is a planning error at a position of the query.
type Error = sql.Error

// FromSQL parses and plans a query.
func FromSQL(text string) (*pb.Plan, error) {
	q, err := sql.Parse(text)
	if err != nil {
		return nil, err
	}
	p, err := Build(q)
	if err != nil {
		return nil, err
	}
	p.Query = text
	return p, nil
}

// Build plans a parsed query.
func Build(q *sql.Query) (plan *pb.Plan, err error) {
	b := newBuilder()
	defer sql.Recover(&err)
	tables := map[string]bool{}
	for _, t := range q.Tables {
		if tables[strings.ToLower(t.Name)] {
			b.failAt(t.Pos, "CREATE TABLE %s is given twice", t.Name)
		}
		tables[strings.ToLower(t.Name)] = true
		sc := &pb.Schema{Input: t.Name}
		cols := map[string]bool{}
		for _, c := range t.Columns {
			if cols[strings.ToLower(c.Name)] {
				b.failAt(c.Pos, "column %s is declared twice", c.Name)
			}
			cols[strings.ToLower(c.Name)] = true
			sc.Columns = append(sc.Columns, &pb.SchemaColumn{Name: c.Name, Type: c.Type})
		}
		b.plan.Schemas = append(b.plan.Schemas, sc)
	}
	for _, cte := range q.With {
		key := strings.ToLower(cte.Name)
		if _, dup := b.stages[key]; dup {
			b.failAt(cte.Pos, "WITH step %q is defined twice", cte.Name)
		}
		b.chain(cte.Name, cte.Select)
		b.stages[key] = cte.Name
	}
	for i, sel := range q.Selects {
		name := fmt.Sprintf("select%d", i+1)
		b.chain(name, sel)
		out := sel.Into
		if out == "" {
			out = DefaultOutput
		}
		b.plan.Outputs = append(b.plan.Outputs, &pb.Output{Name: out, Stage: name})
	}
	return b.plan, nil
}

// chain plans a SELECT, or a UNION of SELECTs as one stage per part plus a
// union stage named name that merges them.
func (b *builder) chain(name string, sel *sql.Select) {
	if sel.Union == nil {
		if ws := multiWindows(b, sel); ws != nil {
			// GROUP BY Windows(w1, w2, ...): one stage per window, merged.
			u := &pb.Stage{Name: name}
			for i, w := range ws {
				part := *sel
				part.GroupBy = w.groupBy
				st := b.stageWithWindowID(fmt.Sprintf("%s#w%d", name, i+1), &part, w.id)
				b.plan.Stages = append(b.plan.Stages, st)
				u.Union = append(u.Union, st.Name)
			}
			b.plan.Stages = append(b.plan.Stages, u)
			return
		}
		b.plan.Stages = append(b.plan.Stages, b.stage(name, sel))
		return
	}
	u := &pb.Stage{Name: name}
	cols := -1
	for i, part := 0, sel; part != nil; i, part = i+1, part.Union {
		st := b.stage(fmt.Sprintf("%s#%d", name, i+1), part)
		n, wildcard := len(st.Projections), false
		for _, p := range st.Projections {
			wildcard = wildcard || p.GetWildcard() != nil
		}
		if !wildcard {
			if cols >= 0 && n != cols {
				b.failAt(part.Pos, "every SELECT of a UNION must have the same number of columns (%d here, %d before)", n, cols)
			}
			cols = n
		}
		b.plan.Stages = append(b.plan.Stages, st)
		u.Union = append(u.Union, st.Name)
	}
	b.plan.Stages = append(b.plan.Stages, u)
}

type windowChoice struct {
	id      string
	groupBy []sql.Expr
}

// multiWindows expands GROUP BY ..., Windows(w1, w2) or Windows(Window('id',
// w1), ...) into one GROUP BY per window; nil when there is no Windows().
func multiWindows(b *builder, sel *sql.Select) []windowChoice {
	at := -1
	for i, g := range sel.GroupBy {
		if c, ok := g.(*sql.Call); ok && strings.EqualFold(c.Name, "windows") {
			if at >= 0 {
				b.failAt(c.P, "only one Windows(...) per GROUP BY")
			}
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	call := sel.GroupBy[at].(*sql.Call)
	if len(call.Args) == 0 {
		b.failAt(call.P, "Windows(...) needs at least one window")
	}
	var out []windowChoice
	named, ids := 0, map[string]bool{}
	for _, a := range call.Args {
		w, id := a, ""
		if c, ok := a.(*sql.Call); ok && strings.EqualFold(c.Name, "window") {
			l, isLit := c.Args[0].(*sql.Literal)
			if len(c.Args) != 2 || !isLit || l.Kind != sql.LitString {
				b.failAt(c.P, "Window takes ('id', window)")
			}
			id, w = l.Text, c.Args[1]
			if ids[strings.ToLower(id)] {
				b.failAt(c.P, "window id %q is used twice", id)
			}
			ids[strings.ToLower(id)] = true
			named++
		}
		if c, ok := w.(*sql.Call); !ok || !isWindowFunc(strings.ToLower(c.Name)) || strings.EqualFold(c.Name, "windows") {
			b.failAt(w.Position(), "Windows(...) takes windows such as TumblingWindow(...), or Window('id', window)")
		}
		gb := append(append(append([]sql.Expr(nil), sel.GroupBy[:at]...), w), sel.GroupBy[at+1:]...)
		out = append(out, windowChoice{id: id, groupBy: gb})
	}
	if named != 0 && named != len(call.Args) {
		b.failAt(call.P, "give every window of Windows(...) an id, or none")
	}
	return out
}

type inputUse struct {
	pos Pos
	ts  string
}

// Pos is a query position.
type Pos = sql.Pos

func newBuilder() *builder {
	return &builder{plan: &pb.Plan{}, stages: map[string]string{}, inputs: map[string]*inputUse{}}
}

type builder struct {
	plan   *pb.Plan
	stages map[string]string // lower-case CTE name -> name as declared
	inputs map[string]*inputUse
}

func (b *builder) failAt(p Pos, format string, args ...any) {
	panic(&sql.Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

// stageCtx is what expression conversion needs to know about a stage.
type stageCtx struct {
	b          *builder
	st         *pb.Stage
	alias      string // lower case, may be empty
	sourceName string // lower case
	groupKeys  []string
	aggKeys    []string
	aliases    map[string]*pb.Expr // select aliases, for HAVING
	aggregated bool
	inGroup    bool // converting a per-group expression
	// Join stages: the right side's field name (its alias) and source name,
	// lower case; streamJoin when DATEDIFF special forms are allowed.
	rightAlias, rightName string
	rightField            string // the alias as written
	streamJoin            bool
	// MATCH_RECOGNIZE: pattern variables (lower case) while converting its
	// MEASURES and DEFINE, and the plan message being built.
	mrVars map[string]bool
	mr     *pb.MatchRecognize
	// windowID is System.Window().Id in one expansion of GROUP BY Windows(...).
	windowID string
}

func (b *builder) stage(name string, sel *sql.Select) *pb.Stage {
	return b.stageWithWindowID(name, sel, "")
}

func (b *builder) stageWithWindowID(name string, sel *sql.Select, windowID string) *pb.Stage {
	st := &pb.Stage{Name: name}
	src := sel.From
	c := &stageCtx{b: b, st: st, alias: strings.ToLower(src.Alias), sourceName: strings.ToLower(src.Name), windowID: windowID}
	if declared, ok := b.stages[strings.ToLower(src.Name)]; ok {
		st.Source = declared
		if src.TimestampBy != nil {
			b.failAt(src.TimestampBy.Position(), "TIMESTAMP BY applies to inputs only; %q is a WITH step", src.Name)
		}
	} else {
		st.Source = src.Name
		b.useInput(src, c)
	}
	st.SourceAlias = src.Alias
	if src.Match != nil {
		if sel.Join != nil || len(src.Applies) > 0 {
			b.failAt(src.Match.Pos, "MATCH_RECOGNIZE cannot be combined with JOIN or APPLY in one SELECT")
		}
		st.Match = c.matchRecognize(src.Match)
		if src.Match.Alias != "" {
			c.alias = strings.ToLower(src.Match.Alias)
		}
	}
	if sel.Join != nil {
		if len(src.Applies) > 0 {
			b.failAt(sel.Join.Pos, "APPLY and JOIN in one SELECT are not supported: apply in a WITH step first")
		}
		st.Join = b.join(c, sel.Join)
	}
	for _, a := range src.Applies {
		fn, ok := applyFuncs[strings.ToLower(a.Func)]
		if !ok {
			b.failAt(a.Pos, "APPLY takes GetArrayElements(...) or GetRecordProperties(...), not %s", a.Func)
		}
		st.Applies = append(st.Applies, &pb.Apply{Func: fn, Arg: c.row(a.Arg), Alias: a.Alias, Outer: a.Outer})
	}
	if len(src.PartitionBy) > 0 {
		b.failAt(src.PartitionBy[0].Position(), "PARTITION BY is not supported on IoT Edge jobs; Millstream partitions by device itself")
	}
	if sel.Where != nil {
		st.Where = c.row(sel.Where)
	}
	// GROUP BY: window, snapshot, keys.
	snapshot := false
	for _, g := range sel.GroupBy {
		if call, ok := g.(*sql.Call); ok {
			lname := strings.ToLower(call.Name)
			if lname == "system.timestamp" {
				snapshot = true
				continue
			}
			if w := c.window(call); w != nil {
				if st.Window != nil {
					b.failAt(call.P, "only one window per GROUP BY (found a second one here)")
				}
				st.Window = w
				continue
			}
		}
		k := c.row(g)
		st.GroupKeys = append(st.GroupKeys, k)
		c.groupKeys = append(c.groupKeys, exprKey(k))
	}
	if st.Window == nil && snapshot {
		st.Window = &pb.Window{Kind: pb.Window_SNAPSHOT, Size: 1, Hop: 1}
	}
	hasAgg := false
	for _, it := range sel.Items {
		if it.Expr != nil && containsAggregate(it.Expr) {
			hasAgg = true
		}
	}
	if sel.Having != nil && containsAggregate(sel.Having) {
		hasAgg = true
	}
	if len(sel.GroupBy) > 0 && st.Window == nil {
		b.failAt(sel.GroupBy[0].Position(), "GROUP BY needs a window: add TumblingWindow, HoppingWindow, SlidingWindow, SessionWindow or System.Timestamp()")
	}
	if hasAgg && st.Window == nil {
		b.failAt(sel.Pos, "aggregates need GROUP BY with a window (for example GROUP BY TumblingWindow(second, 10))")
	}
	c.aggregated = st.Window != nil
	c.aliases = map[string]*pb.Expr{}
	for i, it := range sel.Items {
		if it.Star {
			if c.aggregated {
				b.failAt(it.Pos, "SELECT * cannot be used with GROUP BY: list the grouped columns and aggregates")
			}
			path := it.StarPath
			if len(path) > 0 && (strings.EqualFold(path[0], c.alias) || strings.EqualFold(path[0], c.sourceName)) {
				path = path[1:]
			}
			st.Projections = append(st.Projections, &pb.Projection{Kind: &pb.Projection_Wildcard{Wildcard: &pb.Wildcard{Path: path}}})
			continue
		}
		var e *pb.Expr
		if c.aggregated {
			e = c.group(it.Expr, false)
		} else {
			e = c.row(it.Expr)
		}
		col := it.Alias
		if col == "" {
			col = defaultName(it.Expr, i)
		}
		c.aliases[strings.ToLower(col)] = e
		st.Projections = append(st.Projections, &pb.Projection{Kind: &pb.Projection_Column{Column: &pb.Column{Name: col, Expr: e}}})
	}
	if sel.Having != nil {
		if c.aggregated {
			st.Having = c.group(sel.Having, true)
		} else {
			// Without GROUP BY, HAVING acts like WHERE.
			h := c.row(sel.Having)
			if st.Where == nil {
				st.Where = h
			} else {
				st.Where = call("and", st.Where, h)
			}
		}
	}
	return st
}

func (b *builder) useInput(src *sql.Source, c *stageCtx) {
	key := strings.ToLower(src.Name)
	ts := ""
	in := &pb.Input{Name: src.Name}
	if src.TimestampBy != nil {
		in.TimestampBy = c.row(src.TimestampBy)
		ts = src.TimestampBy.String()
		for _, o := range src.Over {
			in.Over = append(in.Over, c.row(o))
			ts += " OVER " + o.String()
		}
	}
	ts = strings.ToLower(ts)
	if prev, ok := b.inputs[key]; ok {
		if prev.ts != ts {
			b.failAt(src.Pos, "input %q is read with a different TIMESTAMP BY than at %s; every statement must read an input the same way", src.Name, prev.pos)
		}
		return
	}
	b.inputs[key] = &inputUse{pos: src.Pos, ts: ts}
	b.plan.Inputs = append(b.plan.Inputs, in)
}

func defaultName(e sql.Expr, i int) string {
	switch x := e.(type) {
	case *sql.Ident:
		return x.Parts[len(x.Parts)-1]
	case *sql.Call:
		if strings.EqualFold(x.Name, "system.timestamp") {
			return "Timestamp"
		}
	}
	return "Column" + strconv.Itoa(i+1)
}

var applyFuncs = map[string]pb.Apply_Func{
	"getarrayelements": pb.Apply_GET_ARRAY_ELEMENTS, "getrecordproperties": pb.Apply_GET_RECORD_PROPERTIES,
}

var aggregateFuncs = map[string]pb.Aggregate_Func{
	"count": pb.Aggregate_COUNT, "sum": pb.Aggregate_SUM, "avg": pb.Aggregate_AVG,
	"min": pb.Aggregate_MIN, "max": pb.Aggregate_MAX, "stdev": pb.Aggregate_STDEV,
	"stdevp": pb.Aggregate_STDEVP, "var": pb.Aggregate_VAR, "varp": pb.Aggregate_VARP,
	"collect": pb.Aggregate_COLLECT, "collecttop": pb.Aggregate_COLLECT_TOP, "topone": pb.Aggregate_TOP_ONE,
	"percentile_cont": pb.Aggregate_PERCENTILE_CONT, "percentile_disc": pb.Aggregate_PERCENTILE_DISC,
}

// isGroupAggregate: an aggregate of GROUP BY, not an analytic aggregate.
// OVER (ORDER BY ...) only orders CollectTop, TopOne and the percentiles.
func isGroupAggregate(c *sql.Call) bool {
	if _, ok := aggregateFuncs[strings.ToLower(c.Name)]; !ok {
		return false
	}
	o := c.Over
	return o == nil || (len(o.PartitionBy) == 0 && o.Limit == nil && o.When == nil && len(o.OrderBy) > 0)
}

// Functions of the complete language that this engine does not run yet.
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

func walk(e sql.Expr, f func(sql.Expr)) {
	if e == nil {
		return
	}
	f(e)
	switch x := e.(type) {
	case *sql.Call:
		for _, a := range x.Args {
			walk(a, f)
		}
	case *sql.Unary:
		walk(x.X, f)
	case *sql.Binary:
		walk(x.L, f)
		walk(x.R, f)
	case *sql.Case:
		walk(x.Operand, f)
		for _, w := range x.Whens {
			walk(w.Cond, f)
			walk(w.Then, f)
		}
		walk(x.Else, f)
	case *sql.Cast:
		walk(x.X, f)
	case *sql.Like:
		walk(x.X, f)
		walk(x.Pat, f)
	case *sql.In:
		walk(x.X, f)
		for _, a := range x.List {
			walk(a, f)
		}
	case *sql.Between:
		walk(x.X, f)
		walk(x.Lo, f)
		walk(x.Hi, f)
	case *sql.IsNull:
		walk(x.X, f)
	}
}

// row converts an expression evaluated on each input row.
func (c *stageCtx) row(e sql.Expr) *pb.Expr {
	return c.convert(e, func(x sql.Expr) *pb.Expr { return nil })
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
				return c.aggregate(call, aggregateFuncs[strings.ToLower(call.Name)])
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

func call(fn string, args ...*pb.Expr) *pb.Expr {
	return &pb.Expr{Kind: &pb.Expr_Call{Call: &pb.Call{Func: fn, Args: args}}}
}

func lit(v value.Value) *pb.Expr {
	return &pb.Expr{Kind: &pb.Expr_Literal{Literal: value.ToProto(v)}}
}

var binaryFuncs = map[string]string{
	"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "bitand", "|": "bitor", "^": "bitxor",
	"=": "eq", "<>": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "AND": "and", "OR": "or",
}

// datePartFuncs take a date part name as their first argument.
var datePartFuncs = map[string]bool{"dateadd": true, "datediff": true, "datepart": true, "datename": true}

// convert turns an AST expression into a plan expression. hook may replace
// any subtree (returning non-nil).
func (c *stageCtx) convert(e sql.Expr, hook func(sql.Expr) *pb.Expr) *pb.Expr {
	if r := hook(e); r != nil {
		return r
	}
	conv := func(x sql.Expr) *pb.Expr { return c.convert(x, hook) }
	switch x := e.(type) {
	case *sql.Literal:
		switch x.Kind {
		case sql.LitNull:
			return lit(value.Value{})
		case sql.LitString:
			return lit(value.Str(x.Text))
		case sql.LitBool:
			return lit(value.BitValue(x.Text == "true"))
		}
		if n, err := strconv.ParseInt(x.Text, 10, 64); err == nil {
			return lit(value.Int(n))
		}
		f, err := strconv.ParseFloat(x.Text, 64)
		if err != nil || math.IsInf(f, 0) {
			c.b.failAt(x.P, "number %s is out of range", x.Text)
		}
		return lit(value.FloatValue(f))
	case *sql.Ident:
		parts := x.Parts
		if len(parts) > 1 && (strings.EqualFold(parts[0], c.alias) || strings.EqualFold(parts[0], c.sourceName)) {
			parts = parts[1:]
		} else if len(parts) > 1 && c.rightField != "" && (strings.EqualFold(parts[0], c.rightAlias) || strings.EqualFold(parts[0], c.rightName)) {
			parts = append([]string{c.rightField}, parts[1:]...)
		}
		return &pb.Expr{Kind: &pb.Expr_Field{Field: &pb.FieldRef{Path: append([]string(nil), parts...), Quoted: x.Quoted}}}
	case *sql.Unary:
		switch x.Op {
		case "NOT":
			return call("not", conv(x.X))
		case "-":
			return call("neg", conv(x.X))
		case "~":
			return call("bitnot", conv(x.X))
		}
		return conv(x.X)
	case *sql.Binary:
		return call(binaryFuncs[x.Op], conv(x.L), conv(x.R))
	case *sql.Like:
		e := call("like", conv(x.X), conv(x.Pat))
		if x.Not {
			e = call("not", e)
		}
		return e
	case *sql.In:
		args := []*pb.Expr{conv(x.X)}
		for _, a := range x.List {
			args = append(args, conv(a))
		}
		e := call("in", args...)
		if x.Not {
			e = call("not", e)
		}
		return e
	case *sql.Between:
		e := call("between", conv(x.X), conv(x.Lo), conv(x.Hi))
		if x.Not {
			e = call("not", e)
		}
		return e
	case *sql.IsNull:
		if x.Not {
			return call("is_not_null", conv(x.X))
		}
		return call("is_null", conv(x.X))
	case *sql.Cast:
		fn := "cast"
		if x.Try {
			fn = "try_cast"
		}
		return call(fn, conv(x.X), lit(value.Str(x.Type)))
	case *sql.Case:
		ce := &pb.Case{}
		if x.Operand != nil {
			ce.Operand = conv(x.Operand)
		}
		for _, w := range x.Whens {
			ce.Whens = append(ce.Whens, &pb.When{When: conv(w.Cond), Then: conv(w.Then)})
		}
		if x.Else != nil {
			ce.Else = conv(x.Else)
		}
		return &pb.Expr{Kind: &pb.Expr_Case{Case: ce}}
	case *sql.Call:
		return c.convertCall(x, conv)
	}
	c.b.failAt(e.Position(), "unsupported expression %s", e)
	return nil
}

func (c *stageCtx) convertCall(x *sql.Call, conv func(sql.Expr) *pb.Expr) *pb.Expr {
	name := strings.ToLower(x.Name)
	if name == "datediff" && c.streamJoin && len(x.Args) == 3 {
		a, okA := c.joinSide(x.Args[1])
		b, okB := c.joinSide(x.Args[2])
		if okA && okB {
			id, ok := x.Args[0].(*sql.Ident)
			if !ok || len(id.Parts) != 1 || !expr.IsDatePart(id.Parts[0]) {
				c.b.failAt(x.Args[0].Position(), "expected a date part")
			}
			return call("datediff", lit(value.Str(strings.ToLower(id.Parts[0]))),
				&pb.Expr{Kind: &pb.Expr_JoinSideTime{JoinSideTime: a}}, &pb.Expr{Kind: &pb.Expr_JoinSideTime{JoinSideTime: b}})
		}
	}
	if c.mrVars != nil {
		if fn, ok := matchAggFuncs[name]; ok {
			return c.matchAggregate(x, fn)
		}
	}
	if name == "system.window" {
		if len(x.Args) > 0 {
			c.b.failAt(x.P, "System.Window() takes no arguments")
		}
		id := value.Value{}
		if c.windowID != "" {
			id = value.Str(c.windowID)
		}
		return lit(value.RecordValue(&value.Record{Names: []string{"Id"}, Vals: []value.Value{id}}))
	}
	if name == "system.timestamp" {
		if len(x.Args) > 0 {
			c.b.failAt(x.P, "System.Timestamp() takes no arguments")
		}
		return &pb.Expr{Kind: &pb.Expr_SystemTimestamp{SystemTimestamp: true}}
	}
	if fn, agg := aggregateFuncs[name]; agg {
		if x.Over != nil && !isGroupAggregate(x) {
			return c.overAggregate(x, fn)
		}
		c.b.failAt(x.P, "aggregate %s is only allowed in the SELECT list or HAVING of a GROUP BY statement", strings.ToUpper(x.Name))
	}
	if fn, ok := analyticFuncs[name]; ok {
		return c.analytic(x, fn)
	}
	if _, ok := applyFuncs[name]; ok {
		c.b.failAt(x.P, "%s is a table-valued function: use it in CROSS APPLY", x.Name)
	}
	if isWindowFunc(name) {
		c.b.failAt(x.P, "%s is only allowed in GROUP BY", x.Name)
	}
	if strings.HasPrefix(name, "udf.") || strings.HasPrefix(name, "uda.") {
		c.b.failAt(x.P, "user-defined functions are not supported: %s", x.Name)
	}
	if x.Over != nil {
		c.b.failAt(x.Over.P, "OVER is not allowed with %s", x.Name)
	}
	if x.Star || x.Distinct {
		c.b.failAt(x.P, "%s does not accept * or DISTINCT", x.Name)
	}
	minArgs, maxArgs, ok := expr.FuncArity(name)
	if !ok {
		c.b.failAt(x.P, "unknown function %s", x.Name)
	}
	if len(x.Args) < minArgs || (maxArgs >= 0 && len(x.Args) > maxArgs) {
		c.b.failAt(x.P, "%s takes %s, not %d", strings.ToUpper(x.Name), arityText(minArgs, maxArgs), len(x.Args))
	}
	args := make([]*pb.Expr, len(x.Args))
	for i, a := range x.Args {
		if i == 0 && datePartFuncs[name] {
			id, ok := a.(*sql.Ident)
			if !ok || len(id.Parts) != 1 || !expr.IsDatePart(id.Parts[0]) {
				c.b.failAt(a.Position(), "expected a date part (year, quarter, month, dayofyear, day, week, weekday, hour, minute, second, millisecond, microsecond, nanosecond)")
			}
			args[i] = lit(value.Str(strings.ToLower(id.Parts[0])))
			continue
		}
		args[i] = conv(a)
	}
	return call(name, args...)
}

func arityText(minArgs, maxArgs int) string {
	switch {
	case minArgs == maxArgs && minArgs == 1:
		return "1 argument"
	case minArgs == maxArgs:
		return fmt.Sprintf("%d arguments", minArgs)
	case maxArgs < 0:
		return fmt.Sprintf("at least %d arguments", minArgs)
	}
	return fmt.Sprintf("%d to %d arguments", minArgs, maxArgs)
}

// exprKey is a canonical form used to match SELECT expressions with GROUP
// BY keys: field names compare case-insensitively.
func exprKey(e *pb.Expr) string {
	c := proto.Clone(e).(*pb.Expr)
	lowerFields(c)
	return string(mustMarshal(c))
}

func lowerFields(e *pb.Expr) {
	expr.Walk(e, func(x *pb.Expr) {
		if f := x.GetField(); f != nil {
			for i, p := range f.Path {
				f.Path[i] = strings.ToLower(p)
			}
		}
	})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("plan: marshal: %v", err))
	}
	return b
}

// Expr plans a standalone row expression (a TIMESTAMP BY given in a
// configuration file, tests).
func Expr(text string) (e *pb.Expr, err error) {
	ast, err := sql.ParseExpr(text)
	if err != nil {
		return nil, err
	}
	b := newBuilder()
	defer sql.Recover(&err)
	c := &stageCtx{b: b, st: &pb.Stage{}}
	return c.row(ast), nil
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

// joinSide reports which side of a stream join a bare alias names (the
// DATEDIFF(unit, left, right) special form): 0 left, 1 right.
func (c *stageCtx) joinSide(e sql.Expr) (int32, bool) {
	id, ok := e.(*sql.Ident)
	if !ok || len(id.Parts) != 1 {
		return 0, false
	}
	switch n := strings.ToLower(id.Parts[0]); {
	case n == c.alias || n == c.sourceName:
		return 0, true
	case n == c.rightAlias || n == c.rightName:
		return 1, true
	}
	return 0, false
}

// join plans the JOIN of a stage. A join whose ON has no DATEDIFF bound
// between the two sides is a reference-data join; its right side must be
// an input, loaded as a static table.
func (b *builder) join(c *stageCtx, j *sql.Join) *pb.Join {
	src := j.Source
	alias := src.Alias
	if alias == "" {
		alias = src.Name
	}
	if strings.EqualFold(alias, c.alias) || strings.EqualFold(alias, c.sourceName) && c.alias == "" {
		b.failAt(src.Pos, "both sides of the JOIN are called %q: give one an alias", alias)
	}
	c.rightAlias, c.rightName, c.rightField = strings.ToLower(alias), strings.ToLower(src.Name), alias
	pj := &pb.Join{Source: src.Name, Alias: alias, LeftOuter: j.Left}
	lo, hi, found := c.joinBounds(j.On)
	_, isStage := b.stages[strings.ToLower(src.Name)]
	switch {
	case found:
		c.streamJoin = true
		if isStage {
			pj.Source = b.stages[strings.ToLower(src.Name)]
			if src.TimestampBy != nil {
				b.failAt(src.TimestampBy.Position(), "TIMESTAMP BY applies to inputs only; %q is a WITH step", src.Name)
			}
		} else {
			b.useInput(src, c)
		}
		pj.MinGap, pj.MaxGap = lo.widened, hi.widened
		pj.UnmatchedDelay = hi.exact
		if hi.exact-lo.exact > maxWindow {
			b.failAt(j.On.Position(), "a join may span at most 7 days")
		}
	case isStage:
		b.failAt(j.On.Position(), "a JOIN of two streams needs a time bound in ON, such as DATEDIFF(second, %s, %s) BETWEEN 0 AND 10", c.sourceName, alias)
	default:
		if src.TimestampBy != nil {
			b.failAt(src.TimestampBy.Position(), "reference data has no TIMESTAMP BY (a JOIN without a DATEDIFF bound reads %q as reference data)", src.Name)
		}
		pj.Reference = true
		known := false
		for _, r := range b.plan.References {
			known = known || strings.EqualFold(r, src.Name)
		}
		if !known {
			b.plan.References = append(b.plan.References, src.Name)
		}
	}
	pj.On = c.row(j.On)
	if c.streamJoin {
		c.equiKeys(j.On, pj)
	}
	return pj
}

// equiKeys finds `left = right` conditions among the AND-ed parts of ON
// whose sides each read one side of the join only.
func (c *stageCtx) equiKeys(on sql.Expr, pj *pb.Join) {
	conj := splitAnd(on)
	for _, e := range conj {
		bin, ok := e.(*sql.Binary)
		if !ok || bin.Op != "=" {
			continue
		}
		l, r := bin.L, bin.R
		ls, rs := c.sides(l), c.sides(r)
		if ls == 2 && rs == 1 {
			l, r, ls, rs = r, l, rs, ls
		}
		if ls != 1 || rs != 2 {
			continue
		}
		right := c.row(r)
		expr.Walk(right, func(x *pb.Expr) {
			if f := x.GetField(); f != nil && len(f.Path) > 1 {
				f.Path = f.Path[1:] // evaluated on the right record itself
			}
		})
		pj.LeftKeys = append(pj.LeftKeys, c.row(l))
		pj.RightKeys = append(pj.RightKeys, right)
	}
}

// sides reports which join side an expression reads: 1 only the left
// (qualified by the left alias), 2 only the right (every field qualified
// by the right alias), 0 neither or both or unknown.
func (c *stageCtx) sides(e sql.Expr) int {
	left, right, other := false, false, false
	walk(e, func(x sql.Expr) {
		switch v := x.(type) {
		case *sql.Ident:
			if len(v.Parts) > 1 && (strings.EqualFold(v.Parts[0], c.rightAlias) || strings.EqualFold(v.Parts[0], c.rightName)) {
				right = true
			} else if len(v.Parts) > 1 && (strings.EqualFold(v.Parts[0], c.alias) || strings.EqualFold(v.Parts[0], c.sourceName)) {
				left = true
			} else {
				other = true // unqualified: could be either side
			}
		case *sql.Call:
			if containsAggregate(v) || containsAnalytic(v) {
				other = true
			}
		}
	})
	switch {
	case other || left == right:
		return 0
	case left:
		return 1
	}
	return 2
}

type gap struct{ exact, widened int64 }

// joinBounds finds the DATEDIFF(unit, a, b) bound of a stream join among the
// AND-ed conditions of ON, as the range of right time minus left time.
func (c *stageCtx) joinBounds(on sql.Expr) (lo, hi gap, found bool) {
	c.streamJoin = true // recognise the special form while looking
	defer func() { c.streamJoin = false }()
	conj := splitAnd(on)
	var loU, hiU *int64
	var unit int64
	set := func(p **int64, v int64) { x := v; *p = &x }
	for _, e := range conj {
		switch x := e.(type) {
		case *sql.Between:
			if u, sign, ok := c.datediffSides(x.X); ok && !x.Not {
				l, okL := intLit(x.Lo)
				h, okH := intLit(x.Hi)
				if !okL || !okH {
					c.b.failAt(x.P, "the DATEDIFF bound of a join must be number constants")
				}
				if sign < 0 {
					l, h = -h, -l
				}
				unit = u
				set(&loU, l)
				set(&hiU, h)
			}
		case *sql.Binary:
			u, sign, ok := c.datediffSides(x.L)
			other, op := x.R, x.Op
			if !ok {
				if u, sign, ok = c.datediffSides(x.R); ok {
					other, op = x.L, flip(x.Op)
				}
			}
			if !ok {
				continue
			}
			n, okN := intLit(other)
			if !okN {
				c.b.failAt(x.P, "the DATEDIFF bound of a join must be a number constant")
			}
			unit = u
			if sign < 0 {
				n, op = -n, flip(op)
			}
			switch op {
			case "=":
				set(&loU, n)
				set(&hiU, n)
			case "<":
				set(&hiU, n-1)
			case "<=":
				set(&hiU, n)
			case ">":
				set(&loU, n+1)
			case ">=":
				set(&loU, n)
			}
		}
	}
	if unit == 0 {
		return gap{}, gap{}, false
	}
	if loU == nil || hiU == nil {
		c.b.failAt(on.Position(), "the DATEDIFF bound of a join needs a lower and an upper limit (for example BETWEEN 0 AND 10)")
	}
	if *loU > *hiU {
		c.b.failAt(on.Position(), "the DATEDIFF bound of the join admits no time difference")
	}
	// DATEDIFF counts unit boundaries: n boundaries is an elapsed time in
	// (n-1, n+1) units.
	lo = gap{exact: *loU * unit, widened: *loU*unit - unit + 1}
	hi = gap{exact: *hiU * unit, widened: *hiU*unit + unit - 1}
	return lo, hi, true
}

// datediffSides recognises DATEDIFF(unit, side, side) and returns its unit
// in ticks and +1 when it measures right minus left, -1 for left minus right.
func (c *stageCtx) datediffSides(e sql.Expr) (unit int64, sign int, ok bool) {
	call, isCall := e.(*sql.Call)
	if !isCall || !strings.EqualFold(call.Name, "datediff") || len(call.Args) != 3 {
		return 0, 0, false
	}
	a, okA := c.joinSide(call.Args[1])
	bSide, okB := c.joinSide(call.Args[2])
	if !okA || !okB || a == bSide {
		return 0, 0, false
	}
	id, isID := call.Args[0].(*sql.Ident)
	if !isID || len(id.Parts) != 1 {
		return 0, 0, false
	}
	u, known := timeUnits[strings.ToLower(id.Parts[0])]
	if !known {
		c.b.failAt(id.P, "a join bound needs a unit of day, hour, minute, second, millisecond or microsecond")
	}
	if a == 0 {
		return u, 1, true
	}
	return u, -1, true
}

func intLit(e sql.Expr) (int64, bool) {
	l, ok := e.(*sql.Literal)
	if !ok || l.Kind != sql.LitNumber {
		return 0, false
	}
	n, err := strconv.ParseInt(l.Text, 10, 64)
	return n, err == nil
}

func flip(op string) string {
	switch op {
	case "<":
		return ">"
	case "<=":
		return ">="
	case ">":
		return "<"
	case ">=":
		return "<="
	}
	return op
}

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

// splitAnd lists the AND-ed parts of a condition.
func splitAnd(e sql.Expr) []sql.Expr {
	if bin, ok := e.(*sql.Binary); ok && bin.Op == "AND" {
		return append(splitAnd(bin.L), splitAnd(bin.R)...)
	}
	return []sql.Expr{e}
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
