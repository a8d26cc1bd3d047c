package sql

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/stretchr/testify/require"
)

// TestDataDriven runs the files of testdata/, which document the lexer and
// the parser:
//
//	lex          the tokens of the input, one a line: position, kind, text
//	parse        the query printed by Format, or the syntax error with a
//	             caret under its position; every parsed query must also
//	             survive a round trip (see roundTrip)
//	expr         the same for a single expression (ParseExpr)
//
// Rewrite the expected outputs after a deliberate change with
//
//	go test ./operators/sql -run TestDataDriven -rewrite
//
// and review the diff: it is the change in the language.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "lex":
				return lexOutput(d.Input)
			case "parse":
				q, err := Parse(d.Input)
				if err != nil {
					return errorOutput(d.Input, err)
				}
				out := Format(q)
				if err := roundTrip(q); err != nil {
					t.Errorf("%s: %v", d.Pos, err)
				}
				return out
			case "expr":
				e, err := ParseExpr(d.Input)
				if err != nil {
					return errorOutput(d.Input, err)
				}
				again, err := ParseExpr(e.String())
				if err != nil || again.String() != e.String() {
					t.Errorf("%s: %s does not parse back to itself: %v", d.Pos, e, err)
				}
				return e.String() + "\n"
			}
			t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
			return ""
		})
	})
}

var tokenKindNames = map[TokenKind]string{
	TokEOF: "eof", TokIdent: "ident", TokBracket: "bracket", TokQuoted: "quoted",
	TokString: "string", TokNumber: "number", TokOp: "op",
}

func lexOutput(src string) string {
	toks, err := Lex(src)
	if err != nil {
		return errorOutput(src, err)
	}
	var b strings.Builder
	for _, tk := range toks {
		if tk.Kind == TokEOF {
			fmt.Fprintf(&b, "%d:%d eof\n", tk.Pos.Line, tk.Pos.Col)
			continue
		}
		// %q shows escapes and invisible characters unambiguously.
		fmt.Fprintf(&b, "%d:%d %s %q\n", tk.Pos.Line, tk.Pos.Col, tokenKindNames[tk.Kind], tk.Text)
	}
	return b.String()
}

// errorOutput prints a syntax error and the line it is on with a caret
// under the column, which shows at a glance whether the position is right.
func errorOutput(src string, err error) string {
	var perr *Error
	if !errors.As(err, &perr) {
		return fmt.Sprintf("error without a position: %v\n", err)
	}
	return err.Error() + "\n" + perr.Excerpt(src)
}

// roundTrip checks that a parsed query survives Format: the text parses
// to the same tree (positions aside), so the printer loses nothing the
// parser keeps, and formats to the same text again.
func roundTrip(q *Query) error {
	formatted := Format(q)
	again, err := Parse(formatted)
	if err != nil {
		return fmt.Errorf("formatted query does not parse: %v\n%s", err, formatted)
	}
	if text := Format(again); text != formatted {
		return fmt.Errorf("formatting is not stable:\n%s\nbecame\n%s", formatted, text)
	}
	zeroPositions(reflect.ValueOf(q))
	zeroPositions(reflect.ValueOf(again))
	if !reflect.DeepEqual(q, again) {
		return fmt.Errorf("the formatted query parses to another tree:\n%s", formatted)
	}
	return nil
}

// zeroPositions clears every Pos in a tree, which differ between a query
// and its formatted text by design.
func zeroPositions(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			zeroPositions(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			zeroPositions(v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(Pos{}) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			zeroPositions(v.Field(i))
		}
	}
}

// TestRoundTripCorpus formats every query of the conformance suite and of
// the shipped jobs, and checks that the text survives parse -> print ->
// parse -> print unchanged.
func TestRoundTripCorpus(t *testing.T) {
	conf, err := filepath.Glob("../querytest/testdata/conformance/*/*/query.sql")
	require.NoError(t, err)
	jobs, err := filepath.Glob("../../deployments/jobs/*/query.sql")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(conf), 64)
	require.GreaterOrEqual(t, len(jobs), 3)
	for _, path := range append(conf, jobs...) {
		src, err := os.ReadFile(path)
		require.NoError(t, err)
		q, err := Parse(string(src))
		require.NoError(t, err, path)
		if err := roundTrip(q); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}
