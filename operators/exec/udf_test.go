package exec_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const sumUDA = `function main() {
	this.init = function () { this.s = 0; };
	this.accumulate = function (v, ts) { this.s += v; };
	this.computeResult = function () { return this.s; };
}`

func udfExecutor(t *testing.T, query string, fns []*pb.Function, rows *[]string, dead *[]exec.DeadLetter) *exec.Executor {
	t.Helper()
	p, err := plan.FromSQL(query)
	require.NoError(t, err)
	p.Functions = fns
	ex, err := exec.New(p, exec.Options{
		Emit: func(_ string, _ int64, r *value.Record) {
			*rows = append(*rows, string(value.AppendRecordJSON(nil, r)))
		},
		DeadLetter: func(d exec.DeadLetter) { *dead = append(*dead, d) },
	})
	require.NoError(t, err)
	return ex
}

func TestExecUDFErrorDeadLetters(t *testing.T) {
	var rows []string
	var dead []exec.DeadLetter
	ex := udfExecutor(t, "SELECT udf.inv(x) AS y FROM i", []*pb.Function{
		{Name: "inv", Code: `function main(x) { if (x === 0) throw new Error("zero"); return 1 / x; }`},
	}, &rows, &dead)
	for _, x := range []int{2, 0, 4} {
		require.NoError(t, ex.Ingest("i", fmt.Appendf(nil, `{"x": %d}`, x), exec.ArrivalIsEventTime+1))
	}
	ex.Flush()
	require.Equal(t, []string{`{"y":0.5}`, `{"y":0.25}`}, rows)
	require.Len(t, dead, 1)
	require.Equal(t, exec.DeadLetterUDF, dead[0].Kind)
	require.Contains(t, dead[0].Reason, "zero")
	require.JSONEq(t, `{"x":0}`, string(dead[0].Payload))
}

func TestExecUDFUnknownFunction(t *testing.T) {
	p, err := plan.FromSQL("SELECT udf.nope(x) FROM i")
	require.NoError(t, err)
	_, err = exec.New(p, exec.Options{})
	require.Error(t, err)
	p, err = plan.FromSQL("SELECT uda.nope(x) FROM i GROUP BY TumblingWindow(second, 5)")
	require.NoError(t, err)
	_, err = exec.New(p, exec.Options{})
	require.ErrorIs(t, err, exec.ErrBadPlan)
}

// TestExecUDASnapshotRestore: a UDA's window state (its values) survives a
// snapshot, and the restored executor gives the uninterrupted run's rows.
func TestExecUDASnapshotRestore(t *testing.T) {
	const q = "SELECT uda.total(v) AS s, SUM(v) AS want FROM i TIMESTAMP BY t GROUP BY HoppingWindow(second, 10, 5)"
	fns := []*pb.Function{{Name: "total", Kind: pb.Function_AGGREGATE, Code: sumUDA}}
	event := func(n int) []byte {
		ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * 1300 * time.Millisecond)
		return fmt.Appendf(nil, `{"t": %q, "v": %d}`, ts.Format(time.RFC3339Nano), n)
	}
	var whole, partA, partB []string
	var dead []exec.DeadLetter
	ex := udfExecutor(t, q, fns, &whole, &dead)
	for n := 0; n < 40; n++ {
		require.NoError(t, ex.Ingest("i", event(n), exec.ArrivalIsEventTime))
	}
	ex.Flush()
	a := udfExecutor(t, q, fns, &partA, &dead)
	for n := 0; n < 17; n++ {
		require.NoError(t, a.Ingest("i", event(n), exec.ArrivalIsEventTime))
	}
	snap, err := a.Snapshot()
	require.NoError(t, err)
	b := udfExecutor(t, q, fns, &partB, &dead)
	require.NoError(t, b.Restore(snap))
	for n := 17; n < 40; n++ {
		require.NoError(t, b.Ingest("i", event(n), exec.ArrivalIsEventTime))
	}
	b.Flush()
	require.Empty(t, dead)
	require.NotEmpty(t, whole)
	require.Equal(t, whole, append(partA, partB...))
	for _, r := range whole {
		v, err := value.ParseJSON(r)
		require.NoError(t, err)
		s, _ := v.Record().Get("s")
		want, _ := v.Record().Get("want")
		require.Equal(t, want.Int(), s.Int(), r)
	}
}
