package plan

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/sql"
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
	// Join chains: the aliases of the left side other than the source
	// (lower case -> the field holding that alias's record; input names
	// map there too) and the event-time spans of its stream aliases.
	leftAliases map[string]string
	chain       *joinChain
	// MATCH_RECOGNIZE: pattern variables (lower case) while converting its
	// MEASURES and DEFINE, and the plan message being built.
	mrVars map[string]bool
	mr     *pb.MatchRecognize
	// windowID is System.Window().Id in one expansion of GROUP BY Windows(...).
	windowID string
	// partitioned: a source of the stage has PARTITION BY PartitionId.
	partitioned bool
}

// partitionBy accepts PARTITION BY PartitionId [INTO n] on a source and
// ignores it: Millstream already splits every input by device (each
// gateway runs its devices' events through one executor), so the input
// is one partition whose PartitionId is 0 when the event has none (see
// the Ident case of convert). Any other key is refused: compatibility
// level 1.2 partitions by PartitionId only.
func (b *builder) partitionBy(c *stageCtx, src *sql.Source) {
	for _, k := range src.PartitionBy {
		if id, ok := k.(*sql.Ident); !ok || len(id.Parts) != 1 || !strings.EqualFold(id.Parts[0], "PartitionId") {
			b.failAt(k.Position(), "PARTITION BY takes PartitionId only: Millstream partitions every input by device itself and reads PARTITION BY PartitionId as that")
		}
		c.partitioned = true
	}
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
	b.partitionBy(c, src)
	if src.Match != nil {
		if len(sel.Joins) > 0 || len(src.Applies) > 0 {
			b.failAt(src.Match.Pos, "MATCH_RECOGNIZE cannot be combined with JOIN or APPLY in one SELECT")
		}
		st.Match = c.matchRecognize(src.Match)
		if src.Match.Alias != "" {
			c.alias = strings.ToLower(src.Match.Alias)
		}
	}
	if len(sel.Joins) > 0 {
		if len(src.Applies) > 0 {
			b.failAt(sel.Joins[0].Pos, "APPLY and JOIN in one SELECT are not supported: apply in a WITH step first")
		}
		st.Join = b.joinChain(c, sel.Joins)
	}
	for _, a := range src.Applies {
		fn, ok := applyFuncs[strings.ToLower(a.Func)]
		if !ok {
			b.failAt(a.Pos, "APPLY takes GetArrayElements(...) or GetRecordProperties(...), not %s", a.Func)
		}
		st.Applies = append(st.Applies, &pb.Apply{Func: fn, Arg: c.row(a.Arg), Alias: a.Alias, Outer: a.Outer})
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
			col = defaultName(it.Expr, i, c.aliases)
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

// defaultName names a SELECT item written without AS (see doc.go, "Names
// of unnamed columns"): a field by its last name, x.name on a record a
// call returns (System.Window().Id) by that name, an aggregate by its
// function in lower case (COUNT(*) is count), anything else ColumnN by
// position. A name an earlier column already has falls back to ColumnN.
func defaultName(e sql.Expr, i int, taken map[string]*pb.Expr) string {
	name := ""
	switch x := e.(type) {
	case *sql.Ident:
		name = x.Parts[len(x.Parts)-1]
	case *sql.Call:
		lname := strings.ToLower(x.Name)
		_, agg := aggregateFuncs[lname]
		switch {
		case x.Member != "":
			name = x.Member
		case lname == "system.timestamp":
			name = "Timestamp"
		case agg:
			name = lname
		}
	}
	if _, dup := taken[strings.ToLower(name)]; name == "" || dup {
		name = "Column" + strconv.Itoa(i+1)
	}
	return name
}

var applyFuncs = map[string]pb.Apply_Func{
	"getarrayelements": pb.Apply_GET_ARRAY_ELEMENTS, "getrecordproperties": pb.Apply_GET_RECORD_PROPERTIES,
}
