package exec_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// snapshotCases are query folders whose full output must survive a
// snapshot and restore at every point of the stream.
func snapshotCases(t *testing.T) []string {
	t.Helper()
	dirs := []string{"../../deployments/jobs/temperature-filtering"}
	conf := os.Getenv("MILLSTREAM_CONFORMANCE_DIR")
	if conf == "" {
		conf = "../querytest/testdata/conformance/asa"
	}
	entries, err := os.ReadDir(conf)
	if err != nil {
		t.Fatalf("conformance cases not found: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(conf, e.Name()))
		}
	}
	return dirs
}

// collector records emitted rows in order.
type collector struct{ rows []string }

func (c *collector) emit(output string, ts int64, rec *value.Record) {
	c.rows = append(c.rows, fmt.Sprintf("%s %s %s", output, value.FormatTicks(ts), value.AppendRecordJSON(nil, rec)))
}

// newExec builds an executor and loads the reference inputs among files
// (snapshots do not carry reference data).
func newExec(t *testing.T, p *pb.Plan, opts exec.Options, c *collector, files []querytest.InputFile) *exec.Executor {
	t.Helper()
	opts.Emit = c.emit
	ex, err := exec.New(p, opts)
	require.NoError(t, err)
	require.NoError(t, querytest.LoadReferences(ex, files))
	return ex
}

// TestExecSnapshotRestoreAtEveryEvent stops each stream after every event,
// snapshots, restores into a fresh executor and continues: the output must
// equal the uninterrupted run row for row, in order.
func TestExecSnapshotRestoreAtEveryEvent(t *testing.T) {
	runStart := value.FromTime(mustTime("2026-01-01T00:00:00Z"))
	tested := 0
	for _, dir := range snapshotCases(t) {
		c, err := querytest.Load(dir)
		require.NoError(t, err)
		p, files, opts, err := c.Prepare()
		if err != nil {
			continue // needs the complete query language
		}
		t.Run(c.Name, func(t *testing.T) {
			var probe collector
			events, err := querytest.Events(newExec(t, p, opts, &probe, files), files, runStart)
			require.NoError(t, err)
			checkSnapshotEverywhere(t, p, opts, files, events)
		})
		tested++
	}
	require.Greater(t, tested, 1)
}

// checkSnapshotEverywhere runs events once straight through, then once per
// stop point with a snapshot and a restore into a fresh executor there,
// and requires identical output rows (in order) and counters.
func checkSnapshotEverywhere(t *testing.T, p *pb.Plan, opts exec.Options, files []querytest.InputFile, events []querytest.Event) (rows int) {
	t.Helper()
	var whole collector
	ex := newExec(t, p, opts, &whole, files)
	for _, e := range events {
		require.NoError(t, ex.Ingest(e.Input, e.Payload, e.Arrival))
	}
	ex.Flush()
	require.NotEmpty(t, events)
	step := 1
	if len(events) > 200 {
		step = len(events) / 97 // about a hundred stop points on long streams
	}
	for k := 0; k <= len(events); k += step {
		var got collector
		first := newExec(t, p, opts, &got, files)
		for _, e := range events[:k] {
			require.NoError(t, first.Ingest(e.Input, e.Payload, e.Arrival))
		}
		snap, err := first.Snapshot()
		require.NoError(t, err)
		second := newExec(t, p, opts, &got, files)
		require.NoError(t, second.Restore(snap))
		for _, e := range events[k:] {
			require.NoError(t, second.Ingest(e.Input, e.Payload, e.Arrival))
		}
		second.Flush()
		require.Equal(t, whole.rows, got.rows, "stopped after event %d of %d", k, len(events))
		require.Equal(t, ex.Counters(), second.Counters(), "counters after a stop at event %d", k)
	}
	return len(whole.rows)
}

// TestExecSnapshotStatefulOperators covers state the conformance cases do
// not reach: sliding windows with ordered aggregates, sessions, stream
// LEFT JOIN, UNION of two inputs, aggregates with OVER, reorder buffers.
func TestExecSnapshotStatefulOperators(t *testing.T) {
	var a, b []byte
	for i := 0; i < 40; i++ {
		a = fmt.Appendf(a, `{"t":"2026-01-01T00:%02d:%02dZ","k":"k%d","v":%d}`+"\n", i/30, (i*2)%60, i%3, (i*7)%11)
		if i%3 != 0 {
			b = fmt.Appendf(b, `{"t":"2026-01-01T00:%02d:%02dZ","k":"k%d","w":%d}`+"\n", i/30, (i*2+3)%60, i%3, i)
		}
	}
	queries := map[string]string{
		"sliding": `SELECT k, CollectTop(2, v) OVER (ORDER BY v DESC) AS top, PERCENTILE_DISC(0.5) OVER (ORDER BY v) AS p, COUNT(DISTINCT v) AS d
			FROM a TIMESTAMP BY t GROUP BY k, SlidingWindow(second, 9)`,
		"session": `SELECT k, COLLECT(v) AS vs, STDEV(v) AS sd FROM a TIMESTAMP BY t GROUP BY k, SessionWindow(second, 3, 20) OVER (PARTITION BY k)`,
		"left-join": `SELECT a.k, a.v, b.w FROM a TIMESTAMP BY t LEFT JOIN b TIMESTAMP BY t
			ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 4`,
		"union": `SELECT k, v AS x FROM a TIMESTAMP BY t UNION SELECT k, w AS x FROM b TIMESTAMP BY t`,
		"anomaly": `SELECT k, AnomalyDetection_ChangePoint(v, 90, 10) OVER (PARTITION BY k LIMIT DURATION(minute, 5)) AS cp,
			AnomalyDetection_SpikeAndDip(v, 80, 10, 'spikesanddips') OVER (LIMIT DURATION(minute, 5)) AS sd FROM a TIMESTAMP BY t`,
		"match": `SELECT * FROM a TIMESTAMP BY t MATCH_RECOGNIZE (LIMIT DURATION(second, 20) PARTITION BY k
			MEASURES First(Lo.v) AS lo, Last(Hi.v) AS hi, Hi.t AS at AFTER MATCH SKIP TO NEXT ROW
			PATTERN (Lo+ Hi{2,}) DEFINE Lo AS Lo.v < 5, Hi AS Hi.v >= 5) AS m`,
		"over": `SELECT k, SUM(v) OVER (PARTITION BY k LIMIT DURATION(second, 10)) AS s,
			LAG(v, 2, -1) OVER (PARTITION BY k LIMIT DURATION(second, 30)) AS l, ISFIRST(second, 15) OVER (PARTITION BY k) AS f FROM a TIMESTAMP BY t`,
	}
	for name, q := range queries {
		t.Run(name, func(t *testing.T) {
			p, err := plan.FromSQL(q)
			require.NoError(t, err)
			files := []querytest.InputFile{{Name: "a", Data: a}}
			if len(p.Inputs) > 1 {
				files = append(files, querytest.InputFile{Name: "b", Data: b})
			}
			for _, ooo := range []time.Duration{0, 5 * time.Second} {
				opts := exec.Options{OutOfOrderTolerance: ooo}
				var probe collector
				events, err := querytest.Events(newExec(t, p, opts, &probe, files), files, 0)
				require.NoError(t, err)
				// Feed in file order with arrival times so the reorder
				// buffers hold rows at the stop points.
				for i := range events {
					events[i].Arrival = exec.ArrivalIsEventTime
				}
				require.NotZero(t, checkSnapshotEverywhere(t, p, opts, files, events), "a snapshot test without output proves nothing")
			}
		})
	}
}

func TestExecRestoreRejectsOtherPlanAndDamage(t *testing.T) {
	p1, err := plan.FromSQL("SELECT COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)")
	require.NoError(t, err)
	p2, err := plan.FromSQL("SELECT COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 20)")
	require.NoError(t, err)
	var c collector
	ex1 := newExec(t, p1, exec.Options{}, &c, nil)
	require.NoError(t, ex1.Ingest("i", []byte(`{"t":"2026-01-01T00:00:01Z"}`), exec.ArrivalIsEventTime))
	snap, err := ex1.Snapshot()
	require.NoError(t, err)

	ex2 := newExec(t, p2, exec.Options{}, &c, nil)
	require.ErrorIs(t, ex2.Restore(snap), exec.ErrBadSnapshot)

	ex3 := newExec(t, p1, exec.Options{}, &c, nil)
	err = ex3.Restore(snap[:len(snap)/2])
	require.True(t, errors.Is(err, exec.ErrBadSnapshot), "truncated snapshot: %v", err)
	require.ErrorIs(t, ex3.Restore([]byte("not a snapshot at all")), exec.ErrBadSnapshot)
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
