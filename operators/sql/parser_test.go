package sql

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseErrorsNamePosition(t *testing.T) {
	cases := []struct {
		query     string
		line, col int
		msg       string
	}{
		{"SELECT a\nFORM i", 2, 6, "expected FROM"},
		{"SELECT a FROM", 1, 14, "expected an input or WITH step name after FROM, found the end of the query"},
		{"SELECT a, FROM i", 1, 11, "expected an expression"},
		{"SELECT 'abc FROM i", 1, 8, "string is not closed"},
		{"SELECT a FROM i WHERE b = = 2", 1, 27, "expected an expression"},
		{"SELECT a FROM i GROUP b", 1, 23, "expected BY"},
		{"WITH x AS (SELECT a INTO o FROM i) SELECT * FROM x", 1, 21, "INTO is not allowed inside WITH"},
		{"SELECT CAST(a AS blob) FROM i", 1, 18, "expected a type name"},
		{"SELECT a FROM i\n  WHERE x IN (1, 2", 2, 19, "expected ')'"},
		{"SELECT CASE END FROM i", 1, 13, "expected WHEN in CASE"},
		{"SELECT a FROM i /* open", 1, 17, "comment is not closed"},
		{"SELECT a FROM i JOIN j ON a = b RIGHT JOIN k ON a = c", 1, 33, "RIGHT JOIN is not supported"},
		{"SELECT a FROM i RIGHT JOIN j ON a = b", 1, 17, "use LEFT JOIN with the sides swapped"},
		{"SELECT a FROM i $", 1, 17, "unexpected character"},
		{"SELECT a FROM i\nSELECT b FROM j WHERE", 2, 22, "expected an expression"},
		{"SELECT é FROM i WHERE ü > 'ñ' AND", 1, 34, "expected an expression"},
	}
	for _, c := range cases {
		_, err := Parse(c.query)
		require.Error(t, err, c.query)
		var perr *Error
		require.True(t, errors.As(err, &perr), "%q: %T %v", c.query, err, err)
		require.Equal(t, c.line, perr.Pos.Line, "%q: %v", c.query, err)
		require.Equal(t, c.col, perr.Pos.Col, "%q: %v", c.query, err)
		require.Contains(t, perr.Msg, c.msg, c.query)
	}
}

func TestParseAcceptsDialect(t *testing.T) {
	queries := []string{
		"SELECT * FROM i",
		"select a AS [my field], b c, d = e + 1, 'x' FROM [In put] AS s TIMESTAMP BY t OVER k1, k2",
		"SELECT s.a.b.[0], \"quoted\" FROM i s WHERE NOT a IS NULL AND b NOT LIKE 'x%' OR c NOT IN (1,2) AND d NOT BETWEEN 1 AND 2",
		"SELECT System.Timestamp, System.Timestamp() AS timestamp FROM i",
		"SELECT COUNT(DISTINCT a), COUNT(*), LEFT('ab', 1), RIGHT('ab', 1) FROM i GROUP BY TumblingWindow(second, 10)",
		"SELECT a FROM i GROUP BY a, SessionWindow(second, 5, 10) OVER (PARTITION BY a)",
		"SELECT -1, +2, ~3, 1.5e3, .5, a % 2 & 3 | 4 ^ 5 FROM i",
		"SELECT a FROM i WHERE a != 1 AND a !< 2 AND a !> 3 AND a <> 4;",
		"WITH a AS (SELECT * FROM i), b AS (SELECT * FROM a) SELECT * INTO o1 FROM a SELECT * INTO o2 FROM b",
		"SELECT CASE a WHEN 1 THEN 'one' ELSE 'other' END, TRY_CAST(a AS nvarchar(max)) FROM i -- trailing comment",
		"SELECT r.* FROM i",
	}
	for _, q := range queries {
		_, err := Parse(q)
		require.NoError(t, err, q)
	}
}

func TestParseCaseInsensitiveAndRoundTrip(t *testing.T) {
	q, err := Parse("sElEcT a FrOm i wHeRe (x + 1) * 2 >= 4 gRoUp By TUMBLINGWINDOW(SECOND, 5)")
	require.NoError(t, err)
	s := q.Selects[0]
	require.Equal(t, "(((x + 1) * 2) >= 4)", s.Where.String())
	// Printing an expression and parsing it again gives the same tree.
	again, err := ParseExpr(s.Where.String())
	require.NoError(t, err)
	require.Equal(t, s.Where.String(), again.String())
}

func TestParseDeepNestingIsAnErrorNotACrash(t *testing.T) {
	q := "SELECT " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000) + " FROM i"
	_, err := Parse(q)
	require.Error(t, err)
	require.Contains(t, err.Error(), "nested too deeply")
	_, err = Parse("SELECT " + strings.Repeat("NOT ", 5000) + "a FROM i")
	require.Error(t, err)
	_, err = Parse("SELECT " + strings.Repeat("-", 5000) + "a FROM i")
	require.Error(t, err)
}

// TestParseRefusesTooManyTokens (issue 13): the tokens of a query are
// bounded before the parser runs, so a huge query is refused without
// holding a token per byte.
func TestParseRefusesTooManyTokens(t *testing.T) {
	terms := MaxTokens / 2
	_, err := Parse("SELECT " + strings.Repeat("v+", terms) + "v FROM i")
	require.ErrorContains(t, err, fmt.Sprintf("more than %d tokens", MaxTokens))
	var perr *Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, 1, perr.Pos.Line)
	require.Equal(t, len("SELECT ")+MaxTokens, perr.Pos.Col, "at the first token past the bound")

	// At the bound (EOF not counted) the query lexes.
	toks, err := Lex(strings.Repeat("a ", MaxTokens))
	require.NoError(t, err)
	require.Len(t, toks, MaxTokens+1)
	_, err = Lex(strings.Repeat("a ", MaxTokens+1))
	require.Error(t, err)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM i",
		"WITH a AS (SELECT x, COUNT(*) AS c FROM i TIMESTAMP BY t GROUP BY x, TumblingWindow(second, 10) HAVING c > 1) SELECT * INTO o FROM a",
		"SELECT CASE WHEN a LIKE 'x%' THEN CAST(b AS bigint) ELSE NULL END FROM i WHERE c IN (1, 2) AND d BETWEEN 1 AND 3",
		"SELECT [a b], \"c\", s.d.[0] FROM i s TIMESTAMP BY e OVER f",
		"SELECT DATEADD(hour, 1, t) FROM i /* c */ -- d",
		"SELECT a.x, b.y FROM a TIMESTAMP BY t LEFT JOIN b TIMESTAMP BY t ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 5",
		"SELECT i.d, e.ArrayValue FROM i CROSS APPLY GetArrayElements(i.arr) AS e UNION ALL (SELECT d, v FROM j)",
		"CREATE TABLE i (a bigint, b nvarchar(max)); SELECT LAG(a, 2, 0) OVER (PARTITION BY b LIMIT DURATION(hour, 1) WHEN a > 0) FROM i",
		"SELECT CollectTop(2, v) OVER (ORDER BY v DESC, w) FROM i GROUP BY TumblingWindow(second, 5)",
		"SELECT * FROM i MATCH_RECOGNIZE (LIMIT DURATION(minute, 1) MEASURES First(A.x) AS f PATTERN (A+ (B | C){2,3} D?) DEFINE A AS A.x > 1) AS m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Parse(src)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || perr.Pos.Line < 1 || perr.Pos.Col < 1 {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		// Every expression the parser accepts prints to text it accepts again.
		for _, s := range q.Selects {
			if s.Where != nil {
				if _, err := ParseExpr(s.Where.String()); err != nil {
					t.Fatalf("WHERE %s does not parse back: %v", s.Where, err)
				}
			}
		}
	})
}
