package exec_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestStateBytesTracksHeap: the state estimate that job memory budgets
// use is within a factor of two of the heap the state really takes, for
// each kind of state that grows with the input.
func TestStateBytesTracksHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a few hundred MB of state; runs without -short")
	}
	for _, c := range []struct{ name, query string }{
		{"distinct", `SELECT COUNT(DISTINCT x) AS d INTO o FROM i GROUP BY TumblingWindow(hour, 1)`},
		{"groups", `SELECT k, COUNT(*) AS c, AVG(v) AS a, MAX(x) AS m INTO o FROM i GROUP BY k, TumblingWindow(hour, 1)`},
		{"hopping groups", `SELECT k, SUM(v) AS s INTO o FROM i GROUP BY k, HoppingWindow(minute, 60, 10)`},
		{"sliding", `SELECT k, AVG(v) AS a INTO o FROM i GROUP BY k, SlidingWindow(hour, 1)`},
		{"session", `SELECT k, COUNT(*) AS c INTO o FROM i GROUP BY k, SessionWindow(hour, 1, 2)`},
		{"join", `SELECT a.k, b.v INTO o FROM i a JOIN i b ON a.k = b.x AND DATEDIFF(hour, a, b) BETWEEN 0 AND 1`},
		{"lag", `SELECT k, LAG(v) OVER (PARTITION BY k LIMIT DURATION(hour, 1)) AS p INTO o FROM i`},
		{"collect", `SELECT COLLECT() AS all INTO o FROM i GROUP BY TumblingWindow(hour, 1)`},
		{"reorder buffer", `SELECT * INTO o FROM i TIMESTAMP BY t`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := plan.FromSQL(c.query)
			require.NoError(t, err)
			before := heapInUse()
			opts := exec.Options{Emit: func(string, int64, *value.Record) {}, OutOfOrderTolerance: 3600 * 1e9}
			ex, err := exec.New(p, opts)
			require.NoError(t, err)
			base, _ := value.ParseTime("2026-01-01T00:00:00Z")
			for i := 0; i < 100000; i++ {
				// Event times run backwards for the reorder buffer.
				ts := value.FormatTicks(base - int64(i)*value.TicksPerMillisecond)
				payload := fmt.Sprintf(`{"x":"key-%d","k":"dev-%d","v":%d,"t":%q}`, i, i, i, ts)
				require.NoError(t, ex.Ingest("i", []byte(payload), base+int64(i)*value.TicksPerMillisecond))
			}
			heap := heapInUse() - before
			est := ex.StateBytes()
			runtime.KeepAlive(ex)
			ratio := float64(est) / float64(heap)
			t.Logf("%s: heap %.1f MB, estimate %.1f MB, ratio %.2f", c.name, float64(heap)/1e6, float64(est)/1e6, ratio)
			require.Greater(t, heap, int64(5e6), "the input must build state")
			require.InDelta(t, 1.0, ratio, 0.5, "estimate %d bytes, heap %d bytes", est, heap)
		})
	}
}
