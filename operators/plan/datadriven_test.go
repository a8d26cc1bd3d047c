package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/millstream/millstream/operators/sql"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestDataDriven runs the files of testdata/, which document what the
// planner makes of each feature of the language:
//
//	plan    the Plan of the query in the compact form of explain below,
//	        or the planning error with a caret under its position
//
// Rewrite the expected outputs after a deliberate change with
//
//	go test ./operators/plan -run TestDataDriven -rewrite
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "plan" {
				t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
			}
			p, err := FromSQL(d.Input)
			if err != nil {
				return planError(d.Input, err)
			}
			again, err := FromSQL(d.Input)
			if err != nil || !proto.Equal(p, again) {
				t.Errorf("%s: planning is not deterministic (L3)", d.Pos)
			}
			return explain(p)
		})
	})
}

func planError(src string, err error) string {
	var perr *sql.Error
	if !errors.As(err, &perr) {
		return fmt.Sprintf("error without a position: %v\n", err)
	}
	return err.Error() + "\n" + perr.Excerpt(src)
}

// explain renders a Plan compactly: every set field of every message, in
// declaration order, by reflection (so a new field shows up without
// touching this), with expressions as one-line calls and durations in
// time units rather than ticks. Scalars at their zero value (0, false,
// "") are left out, as proto3 does not tell them from unset; so is the
// query text itself.
func explain(p *pb.Plan) string {
	var b strings.Builder
	c := proto.Clone(p).(*pb.Plan)
	c.Query = ""
	writeMessage(&b, c.ProtoReflect(), 0)
	return b.String()
}

// durationFields hold ticks (100 ns).
var durationFields = map[protoreflect.FullName]bool{
	"millstream.v1.Window.size": true, "millstream.v1.Window.hop": true, "millstream.v1.Window.offset": true,
	"millstream.v1.Window.timeout": true, "millstream.v1.Window.max_duration": true,
	"millstream.v1.Join.min_gap": true, "millstream.v1.Join.max_gap": true, "millstream.v1.Join.unmatched_delay": true,
	"millstream.v1.Analytic.duration": true, "millstream.v1.MatchRecognize.duration": true,
}

func writeMessage(b *strings.Builder, m protoreflect.Message, depth int) {
	pad := strings.Repeat("  ", depth)
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) && !meaningfulZeroEnum(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			if fd.Message() == nil || fd.Message().FullName() == "millstream.v1.Expr" {
				items := make([]string, l.Len())
				for j := range items {
					items[j] = scalar(fd, l.Get(j))
				}
				fmt.Fprintf(b, "%s%s: [%s]\n", pad, fd.Name(), strings.Join(items, ", "))
				continue
			}
			for j := 0; j < l.Len(); j++ {
				writeNested(b, fmt.Sprintf("%s%s[%d]", pad, fd.Name(), j), l.Get(j).Message(), depth)
			}
		case fd.Message() != nil && fd.Message().FullName() != "millstream.v1.Expr":
			writeNested(b, pad+string(fd.Name()), v.Message(), depth)
		default:
			fmt.Fprintf(b, "%s%s: %s\n", pad, fd.Name(), scalar(fd, v))
		}
	}
}

// meaningfulZeroEnum: proto3 does not mark a field at its zero value as
// set, but an enum's zero is often a real choice (MatchAggregate FIRST,
// PatternNode VAR) and is shown unless it is the UNSPECIFIED placeholder.
func meaningfulZeroEnum(fd protoreflect.FieldDescriptor) bool {
	if fd.Enum() == nil || fd.IsList() || fd.ContainingOneof() != nil {
		return false
	}
	return !strings.HasSuffix(string(fd.Enum().Values().ByNumber(0).Name()), "UNSPECIFIED")
}

// writeNested prints a message on the line of its field when it is short
// and flat, else indented below it.
func writeNested(b *strings.Builder, head string, m protoreflect.Message, depth int) {
	var inner strings.Builder
	writeMessage(&inner, m, 0)
	lines := strings.Split(strings.TrimSuffix(inner.String(), "\n"), "\n")
	flat := true
	for _, l := range lines {
		flat = flat && !strings.HasPrefix(l, " ") && !strings.HasSuffix(l, ":")
	}
	if one := strings.Join(lines, ", "); flat && len(head)+len(one) < 100 {
		fmt.Fprintf(b, "%s: {%s}\n", head, one)
		return
	}
	fmt.Fprintf(b, "%s:\n", head)
	writeMessage(b, m, depth+1)
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch {
	case fd.Message() != nil:
		return exprText(v.Message().Interface().(*pb.Expr))
	case fd.Enum() != nil:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case durationFields[fd.FullName()]:
		return (time.Duration(v.Int()) * 100).String()
	case fd.Kind() == protoreflect.StringKind:
		return strconv.Quote(v.String())
	}
	return v.String()
}

// exprText renders a plan expression as one line: fields as dotted names,
// functions as calls, literals typed by their spelling ('text', 1, 1.0),
// and references into the stage as agg[i], key[i], analytic[i].
func exprText(e *pb.Expr) string {
	switch k := e.Kind.(type) {
	case *pb.Expr_Literal:
		return literalText(value.FromProto(k.Literal))
	case *pb.Expr_Field:
		if k.Field.Quoted {
			return `"` + strings.Join(k.Field.Path, ".") + `"`
		}
		parts := make([]string, len(k.Field.Path))
		for i, part := range k.Field.Path {
			parts[i] = part
			if strings.ContainsAny(part, " .[]'\"") || part == "" {
				parts[i] = "[" + part + "]" // keep the parts apart
			}
		}
		return strings.Join(parts, ".")
	case *pb.Expr_Call:
		args := make([]string, len(k.Call.Args))
		for i, a := range k.Call.Args {
			args[i] = exprText(a)
		}
		return k.Call.Func + "(" + strings.Join(args, ", ") + ")"
	case *pb.Expr_Case:
		s := "CASE"
		if k.Case.Operand != nil {
			s += " " + exprText(k.Case.Operand)
		}
		for _, w := range k.Case.Whens {
			s += " WHEN " + exprText(w.When) + " THEN " + exprText(w.Then)
		}
		if k.Case.Else != nil {
			s += " ELSE " + exprText(k.Case.Else)
		}
		return s + " END"
	case *pb.Expr_Aggregate:
		return fmt.Sprintf("agg[%d]", k.Aggregate)
	case *pb.Expr_GroupKey:
		return fmt.Sprintf("key[%d]", k.GroupKey)
	case *pb.Expr_SystemTimestamp:
		return "System.Timestamp()"
	case *pb.Expr_Analytic:
		return fmt.Sprintf("analytic[%d]", k.Analytic)
	case *pb.Expr_JoinSideTime:
		return map[int32]string{0: "time(left)", 1: "time(right)"}[k.JoinSideTime]
	case *pb.Expr_Row:
		return "row"
	}
	return fmt.Sprintf("?%v", e) // a kind this renderer does not know yet
}

func literalText(v value.Value) string {
	switch v.Kind() {
	case value.Null:
		return "NULL"
	case value.String:
		return "'" + strings.ReplaceAll(v.Str(), "'", "''") + "'"
	case value.Float:
		s := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0" // tell 1.0 from the bigint 1
		}
		return s
	case value.Bit:
		return strconv.FormatBool(v.Bool())
	}
	return string(value.AppendJSON(nil, v))
}
