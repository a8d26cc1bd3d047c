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

// walk calls f on e and every subexpression, parents first.
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
		if len(parts) == 1 && !x.Quoted && c.alias != "" && strings.EqualFold(parts[0], c.alias) &&
			c.rightField == "" && c.leftAliases == nil && c.mrVars == nil {
			// The source's alias alone is its whole event, as in Collect(e)
			// or GetRecordProperties(e); in a join the alias names one side.
			return &pb.Expr{Kind: &pb.Expr_Row{Row: true}}
		}
		if len(parts) > 1 && (strings.EqualFold(parts[0], c.alias) || strings.EqualFold(parts[0], c.sourceName)) {
			parts = parts[1:]
		} else if len(parts) > 1 && c.rightField != "" && (strings.EqualFold(parts[0], c.rightAlias) || strings.EqualFold(parts[0], c.rightName)) {
			parts = append([]string{c.rightField}, parts[1:]...)
		} else if f, chained := c.leftAliases[strings.ToLower(parts[0])]; len(parts) > 1 && chained {
			// The right side of an earlier join of a chain: its record is
			// the field named by its alias.
			parts = append([]string{f}, parts[1:]...)
		}
		f := &pb.Expr{Kind: &pb.Expr_Field{Field: &pb.FieldRef{Path: append([]string(nil), parts...), Quoted: x.Quoted}}}
		if c.partitioned && strings.EqualFold(parts[len(parts)-1], "PartitionId") && (len(parts) == 1 ||
			len(parts) == 2 && (strings.EqualFold(parts[0], c.rightField) || c.leftAliases[strings.ToLower(parts[0])] != "")) {
			// One partition per input (see partitionBy): PartitionId is 0
			// unless the event carries its own.
			return call("coalesce", f, lit(value.Int(0)))
		}
		return f
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
		a, b := c.sideTime(x.Args[1]), c.sideTime(x.Args[2])
		if a != nil && b != nil {
			id, ok := x.Args[0].(*sql.Ident)
			if !ok || len(id.Parts) != 1 || !expr.IsDatePart(id.Parts[0]) {
				c.b.failAt(x.Args[0].Position(), "expected a date part")
			}
			return call("datediff", lit(value.Str(strings.ToLower(id.Parts[0]))), a, b)
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
	if strings.HasPrefix(name, "uda.") {
		c.b.failAt(x.P, "%s is a user-defined aggregate: use it in the SELECT list or HAVING of a GROUP BY statement, without OVER", x.Name)
	}
	if strings.HasPrefix(name, "udf.") {
		// The job declares the functions; the executor checks the name.
		if len(name) == len("udf.") || x.Over != nil || x.Star || x.Distinct {
			c.b.failAt(x.P, "%s: a user-defined function takes plain arguments", x.Name)
		}
		args := make([]*pb.Expr, len(x.Args))
		for i, a := range x.Args {
			args[i] = conv(a)
		}
		return call(name, args...)
	}
	if name == "getmetadatapropertyvalue" {
		return c.metadata(x)
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

func intLit(e sql.Expr) (int64, bool) {
	l, ok := e.(*sql.Literal)
	if !ok || l.Kind != sql.LitNumber {
		return 0, false
	}
	n, err := strconv.ParseInt(l.Text, 10, 64)
	return n, err == nil
}

// splitAnd lists the AND-ed parts of a condition.
func splitAnd(e sql.Expr) []sql.Expr {
	if bin, ok := e.(*sql.Binary); ok && bin.Op == "AND" {
		return append(splitAnd(bin.L), splitAnd(bin.R)...)
	}
	return []sql.Expr{e}
}

// metadata plans GetMetadataPropertyValue(input, 'property'): the input
// must be the stage's own source, an input (the metadata travels with
// the event only up to the first step, as in Stream Analytics), and the
// property a name Millstream knows. The input is marked as read for its
// metadata, so the gateway passes it along.
func (c *stageCtx) metadata(x *sql.Call) *pb.Expr {
	if len(x.Args) != 2 {
		c.b.failAt(x.P, "GetMetadataPropertyValue takes (input, 'property')")
	}
	id, ok := x.Args[0].(*sql.Ident)
	if !ok || len(id.Parts) != 1 || !(strings.EqualFold(id.Parts[0], c.alias) || strings.EqualFold(id.Parts[0], c.sourceName)) {
		c.b.failAt(x.Args[0].Position(), "GetMetadataPropertyValue reads the metadata of the step's input: name its alias")
	}
	var in *pb.Input
	for _, i := range c.b.plan.Inputs {
		if strings.EqualFold(i.Name, c.sourceName) {
			in = i
		}
	}
	if in == nil {
		c.b.failAt(x.Args[0].Position(), "GetMetadataPropertyValue needs an input, and %s is a step of the query: read the metadata in the step that reads the input", id.Parts[0])
	}
	l, ok := x.Args[1].(*sql.Literal)
	if !ok || l.Kind != sql.LitString {
		c.b.failAt(x.Args[1].Position(), "the metadata property must be a string literal, such as '[User].[name]' or 'IoTHub.ConnectionDeviceId'")
	}
	parts, ok := expr.ParseMetadataPath(l.Text)
	if !ok {
		c.b.failAt(l.P, "unknown metadata property %q (EventEnqueuedUtcTime, EventProcessedUtcTime, EventId, IoTHub[.name], EventHub[.name], User[.name])", l.Text)
	}
	in.Metadata = true
	args := make([]*pb.Expr, len(parts))
	for i, p := range parts {
		args[i] = lit(value.Str(p))
	}
	return call("getmetadatapropertyvalue", args...)
}
