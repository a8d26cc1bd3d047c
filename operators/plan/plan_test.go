package plan

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

func TestPlanErrorsNamePosition(t *testing.T) {
	cases := []struct {
		query     string
		line, col int
		msg       string
	}{
		{"SELECT COUNT(*) FROM i", 1, 1, "aggregates need GROUP BY with a window"},
		{"SELECT a, COUNT(*) FROM i GROUP BY TumblingWindow(second, 5)", 1, 8, "a is neither in GROUP BY nor inside an aggregate"},
		{"SELECT a FROM i GROUP BY a", 1, 26, "GROUP BY needs a window"},
		{"SELECT frob(a) FROM i", 1, 8, "unknown function frob"},
		{"SELECT SUBSTRING(a, 1) FROM i", 1, 8, "SUBSTRING takes 3 arguments, not 2"},
		{"WITH c AS (SELECT * FROM i)\nSELECT * FROM c TIMESTAMP BY t", 2, 30, "TIMESTAMP BY applies to inputs only"},
		{"SELECT * INTO a FROM i TIMESTAMP BY t\nSELECT * INTO b FROM i TIMESTAMP BY u", 2, 22, "different TIMESTAMP BY"},
		{"SELECT COUNT(*) FROM i GROUP BY HoppingWindow(second, 5, 10)", 1, 58, "hop"},
		{"SELECT COUNT(*) FROM i GROUP BY SessionWindow(second, 10, 5)", 1, 55, "timeout must not exceed"},
		{"SELECT COUNT(*) FROM i GROUP BY TumblingWindow(fortnight, 1)", 1, 48, "expected a time unit"},
		{"SELECT COUNT(*) FROM i GROUP BY TumblingWindow(day, 8)", 1, 53, "limited to 7 days"},
		{"SELECT * FROM i GROUP BY TumblingWindow(second, 5)", 1, 8, "SELECT * cannot be used with GROUP BY"},
		{"SELECT SUM(COUNT(a)) FROM i GROUP BY TumblingWindow(second, 5)", 1, 12, "aggregates cannot be nested"},
		{"SELECT a FROM i WHERE COUNT(*) > 1", 1, 23, "only allowed in the SELECT list or HAVING"},
		{"SELECT DATEADD(fortnight, 1, t) FROM i", 1, 16, "expected a date part"},
		{"SELECT LAG(a) FROM i", 1, 8, "LAG needs OVER (LIMIT DURATION(unit, n))"},
		{"SELECT LAG(a, 0) OVER (LIMIT DURATION(hour, 1)) FROM i", 1, 15, "offset must be a whole number"},
		{"SELECT COUNT(*), LAG(a) OVER (LIMIT DURATION(hour, 1)) FROM i GROUP BY TumblingWindow(second, 5)", 1, 18, "compute it in a WITH step first"},
		{"SELECT ISFIRST(minute) FROM i", 1, 8, "ISFIRST takes (unit, size)"},
		{"SELECT COLLECT(a) FROM i", 1, 1, "aggregates need GROUP BY with a window"},
		{"SELECT TopOne() FROM i GROUP BY TumblingWindow(second, 5)", 1, 8, "TOPONE needs OVER (ORDER BY ...)"},
		{"SELECT PERCENTILE_CONT(2) OVER (ORDER BY a) FROM i GROUP BY TumblingWindow(second, 5)", 1, 24, "takes one number from 0 to 1"},
		{"SELECT a FROM i JOIN j ON i.x = j.x JOIN j ON 1 = 1", 1, 42, "two sources of the JOIN are called \"j\""},
		{"WITH c AS (SELECT * FROM i) SELECT * FROM i JOIN c ON i.x = c.x", 1, 59, "needs a time bound"},
		{"SELECT a FROM i JOIN j ON DATEDIFF(second, i, j) > 0", 1, 50, "needs a lower and an upper limit"},
		{"CREATE TABLE i (a bigint, A float) SELECT * FROM i", 1, 27, "column A is declared twice"},
		{"SELECT a FROM i UNION SELECT a, b FROM j", 1, 23, "same number of columns"},
		{"SELECT SUM(DISTINCT a) FROM i GROUP BY TumblingWindow(second, 5)", 1, 8, "DISTINCT is only supported in COUNT"},
	}
	for _, c := range cases {
		_, err := FromSQL(c.query)
		require.Error(t, err, c.query)
		var perr *sql.Error
		require.True(t, errors.As(err, &perr), "%q: %v", c.query, err)
		require.Contains(t, perr.Msg, c.msg, c.query)
		require.Equal(t, c.line, perr.Pos.Line, "%q: %v", c.query, err)
		require.Equal(t, c.col, perr.Pos.Col, "%q: %v", c.query, err)
	}
}

func TestPlanShape(t *testing.T) {
	p, err := FromSQL(`WITH f AS (SELECT s.deviceId, temperature AS temp FROM Telemetry s TIMESTAMP BY ts OVER deviceId WHERE temperature > 70)
		SELECT deviceId, AVG(temp) AS avgTemp, COUNT(*) AS [Count], System.Timestamp() AS windowEnd
		INTO alerts FROM f GROUP BY deviceId, HoppingWindow(Duration(minute, 5), Hop(minute, 1)) HAVING [Count] > 2
		SELECT * FROM f`)
	require.NoError(t, err)
	require.Len(t, p.Inputs, 1)
	require.Equal(t, "Telemetry", p.Inputs[0].Name)
	require.Len(t, p.Inputs[0].Over, 1)
	require.Len(t, p.Stages, 3)
	agg := p.Stages[1]
	require.Equal(t, "f", agg.Source)
	require.Equal(t, pb.Window_HOPPING, agg.Window.Kind)
	require.Equal(t, int64(5*60*10_000_000), agg.Window.Size)
	require.Equal(t, int64(60*10_000_000), agg.Window.Hop)
	require.Len(t, agg.Aggregates, 2)
	// HAVING [Count] resolves to the COUNT(*) aggregate through its alias.
	require.Equal(t, int32(1), agg.Having.GetCall().Args[0].GetAggregate())
	// s.deviceId lost its source alias; the projection is named deviceId.
	require.Equal(t, []string{"deviceId"}, p.Stages[0].Projections[0].GetColumn().Expr.GetField().Path)
	require.Equal(t, []*pb.Output{{Name: "alerts", Stage: "select1"}, {Name: "output", Stage: "select2"}}, p.Outputs)
}

// FuzzFromSQL plans arbitrary query text: an error or a plan that compiles
// into an executor, never a panic or a stack overflow.
func FuzzFromSQL(f *testing.F) {
	for _, s := range []string{
		"SELECT * INTO o FROM i",
		"SELECT deviceId, AVG(t) AS a INTO o FROM i TIMESTAMP BY ts GROUP BY deviceId, HoppingWindow(second, 10, 5) HAVING COUNT(*) > 2",
		"WITH s AS (SELECT d, LAG(v) OVER (PARTITION BY d LIMIT DURATION(hour, 1)) AS p FROM i) SELECT * INTO o FROM s WHERE p IS NOT NULL",
		"SELECT a.k, b.v INTO o FROM a TIMESTAMP BY t JOIN b TIMESTAMP BY t ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 5",
		"SELECT PATINDEX('%a%b', s), REPLICATE(s, 3), SUBSTRING(s, 2, 3) INTO o FROM i",
		"SELECT * INTO o FROM i MATCH_RECOGNIZE (LIMIT DURATION(minute, 1) MEASURES Last(A.x) AS l PATTERN (A+ B) DEFINE A AS A.x > 1, B AS B.x < 1) AS m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := FromSQL(src)
		if err != nil {
			return
		}
		if _, err := proto.Marshal(p); err != nil {
			t.Fatalf("plan does not marshal: %v", err)
		}
		_, _ = exec.New(p, exec.Options{})
	})
}
