package expr_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
)

// eval plans and evaluates one expression against a row.
func eval(t *testing.T, text string, row string) (value.Value, error) {
	t.Helper()
	p, err := plan.Expr(text)
	require.NoError(t, err, text)
	e, err := expr.Compile(p)
	require.NoError(t, err, text)
	var d value.Decoder
	rec, err := d.Decode([]byte(row))
	require.NoError(t, err)
	ts, _ := value.ParseTime("2026-03-04T05:06:07.089Z")
	c := &expr.Ctx{Rec: rec, TS: ts}
	v := e(c)
	return v, c.Err
}

func TestExprFunctions(t *testing.T) {
	row := `{"a": 7, "f": 2.5, "s": "Hello, World", "n": null, "t": "2024-01-31T10:00:00Z", "arr": [1, "x", {"k": 3}], "rec": {"Inner": {"v": 9}}}`
	cases := []struct{ expr, want string }{
		{"a + 1", "8"},
		{"a / 2", "3.5"},
		{"a % 4", "3"},
		{"9223372036854775807 + 1", "9.223372036854776e+18"},
		{"s + '!'", `"Hello, World!"`},
		{"-f", "-2.5"},
		{"a > 5 AND n IS NULL", "true"},
		{"n = 1 OR a = 7", "true"},
		{"n = 1 AND a = 7", "NULL"},
		{"n = 1 AND a = 8", "false"},
		{"NOT (n = 1)", "NULL"},
		{"a IN (1, n, 7)", "true"},
		{"a IN (1, n)", "NULL"},
		{"a BETWEEN 7 AND 8", "true"},
		{"s LIKE 'Hello%'", "true"},
		{"s LIKE '_ello, W%d'", "true"},
		{"s LIKE '[GH]ello%'", "true"},
		{"s LIKE '[^H]%'", "false"},
		{"s NOT LIKE '%xyz%'", "true"},
		{"CASE WHEN a > 10 THEN 'big' WHEN a > 5 THEN 'mid' ELSE 'small' END", `"mid"`},
		{"CASE a WHEN 7 THEN 'seven' END", `"seven"`},
		{"CASE a WHEN 8 THEN 'eight' END", "NULL"},
		{"CAST('42' AS bigint)", "42"},
		{"CAST(3.9 AS bigint)", "3"},
		{"CAST(a AS nvarchar(max))", `"7"`},
		{"CAST('2024-01-01' AS datetime)", "2024-01-01T00:00:00.0000000Z"},
		{"TRY_CAST('x' AS float)", "NULL"},
		{"TRY_CAST(rec AS array)", "NULL"},
		{"GetType(f)", `"float"`},
		{"GetType(t)", `"nvarchar(max)"`},
		{"GetType(CAST(t AS datetime))", `"datetime"`},
		{"COALESCE(n, n, 'z')", `"z"`},
		{"NULLIF(a, 7)", "NULL"},
		{"ABS(-3)", "3"},
		{"CEILING(f)", "3"},
		{"FLOOR(-f)", "-3"},
		{"POWER(2, 10)", "1024"},
		{"SQRT(16)", "4"},
		{"SQUARE(f)", "6.25"},
		{"SIGN(-f)", "-1"},
		{"ROUND(2.345, 2)", "2.35"},
		{"ROUND(-2.5, 0)", "-3"},
		{"ROUND(1250, -2)", "1300"},
		{"LEN('ab  ')", "2"},
		{"LOWER(s)", `"hello, world"`},
		{"UPPER('é')", `"É"`},
		{"CHARINDEX('o', s)", "5"},
		{"CHARINDEX('o', s, 6)", "9"},
		{"CHARINDEX('zz', s)", "0"},
		{"PATINDEX('%W_r%', s)", "8"},
		{"SUBSTRING(s, 0, 3)", `"He"`},
		{"SUBSTRING(s, 8, 100)", `"World"`},
		{"REPLICATE('ab', 3)", `"ababab"`},
		{"REPLICATE('ab', -1)", "NULL"},
		{"REGEXMATCH(s, 'w[aeiou]r')", "8"},
		{"REGEXMATCH(s, '(')", "0"},
		{"CONCAT(a, '-', n, '-', f)", `"7--2.5"`},
		{"CONCAT_WS('/', 'x', n, 'y')", `"x/y"`},
		{"GetArrayElement(arr, 1)", `"x"`},
		{"GetArrayElement(arr, 5)", "NULL"},
		{"GetArrayLength(arr)", "3"},
		{"GetRecordPropertyValue(rec.Inner, 'v')", "9"},
		{"rec.inner.V", "9"},
		{"DATEADD(month, 1, t)", "2024-02-29T10:00:00.0000000Z"},
		{"DATEADD(year, -1, '2024-02-29')", "2023-02-28T00:00:00.0000000Z"},
		{"DATEADD(minute, 90, t)", "2024-01-31T11:30:00.0000000Z"},
		{"DATEDIFF(year, '2023-12-31T23:59:59Z', '2024-01-01T00:00:00Z')", "1"},
		{"DATEDIFF(month, '2024-01-31', '2024-02-01')", "1"},
		{"DATEDIFF(day, '2024-01-02T00:00:00Z', '2024-01-01T23:59:59Z')", "-1"},
		{"DATEDIFF(second, t, DATEADD(minute, 2, t))", "120"},
		{"DATEDIFF(week, '2024-01-06', '2024-01-07')", "1"},
		{"DATEPART(weekday, '2024-01-07')", "1"},
		{"DATEPART(week, '2024-01-07')", "2"},
		{"DATEPART(quarter, t)", "1"},
		{"DATEPART(millisecond, System.Timestamp())", "89"},
		{"DATENAME(month, t)", `"January"`},
		{"DATENAME(weekday, t)", `"Wednesday"`},
		{"YEAR(t) * 10000 + MONTH(t) * 100 + DAY(t)", "20240131"},
		{"DATETIMEFROMPARTS(2024, 2, 29, 23, 59, 59, 999)", "2024-02-29T23:59:59.9990000Z"},
		{"CAST(1 AS bit) & CAST(0 AS bit)", "false"},
		{"~CAST(0 AS bit)", "true"},
		{"6 ^ 3", "5"},
		{"\"s\"", `"Hello, World"`},
		{"\"no such field\"", `"no such field"`},
		{"missing", "NULL"},
	}
	for _, c := range cases {
		v, err := eval(t, c.expr, row)
		require.NoError(t, err, c.expr)
		require.Equal(t, c.want, v.String(), c.expr)
	}
}

func TestExprTypeErrorsAreReportedNotPanics(t *testing.T) {
	row := `{"s": "abc", "a": 1, "r": {"x": 1}}`
	for _, text := range []string{
		"s > 1", "s * 2", "a / 0", "a % 0", "-s", "CAST(s AS bigint)", "CAST(r AS datetime)",
		"DATEADD(day, 1, 'not a date')", "s & 1", "NOT s", "GetArrayLength(s)", "LEFT(s, -1)",
		"DATETIMEFROMPARTS(2024, 2, 30, 0, 0, 0, 0)", "REPLICATE(s, 100000000)",
		// n * len overflowed int64 and passed the size check (issue 13).
		"REPLICATE('ab', 4611686018427387904)", "REPLICATE(s, 6148914691236517206)", "SPACE(4611686018427387904)",
	} {
		v, err := eval(t, text, row)
		require.Error(t, err, text)
		require.True(t, v.IsNull(), text)
		if text != "DATEADD(day, 1, 'not a date')" {
			require.True(t, errors.Is(err, expr.ErrType), "%s: %v", text, err)
		}
	}
}

func TestExprGeospatial(t *testing.T) {
	row := `{"here": "POINT(-122.13 47.64)", "zone": "POLYGON((-122.2 47.6, -122.1 47.6, -122.1 47.7, -122.2 47.7, -122.2 47.6))"}`
	cases := []struct{ expr, want string }{
		{"ST_WITHIN(here, zone)", "1"},
		{"ST_WITHIN(CreatePoint(47.5, -122.13), zone)", "0"},
		{"ST_WITHIN(CreatePoint(47.64, -122.13), CreatePolygon(CreatePoint(47.6, -122.2), CreatePoint(47.6, -122.1), CreatePoint(47.7, -122.1), CreatePoint(47.7, -122.2), CreatePoint(47.6, -122.2)))", "1"},
		{"ST_INTERSECTS(CreateLineString(CreatePoint(47.5, -122.15), CreatePoint(47.8, -122.15)), zone)", "1"},
		{"ST_INTERSECTS(CreateLineString(CreatePoint(47.5, -121), CreatePoint(47.8, -121)), zone)", "0"},
		{"ST_OVERLAPS('POLYGON((-122.15 47.65, -122.0 47.65, -122.0 47.8, -122.15 47.8, -122.15 47.65))', zone)", "1"},
		{"ST_OVERLAPS(here, zone)", "0"},
		{"CreatePoint(47.64, -122.13)", `{"type":"Point","coordinates":[-122.13,47.64]}`},
		// One degree of latitude is about 111.2 km.
		{"ROUND(ST_DISTANCE(CreatePoint(47, -122), CreatePoint(48, -122)) / 1000, 0)", "111"},
	}
	for _, c := range cases {
		v, err := eval(t, c.expr, row)
		require.NoError(t, err, c.expr)
		require.Equal(t, c.want, v.String(), c.expr)
	}
	_, err := eval(t, "ST_WITHIN('POINT(1)', zone)", row)
	require.ErrorIs(t, err, expr.ErrType)
}
