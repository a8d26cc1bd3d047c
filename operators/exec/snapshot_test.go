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
		conf = "../../../shared/conformance/asa"
	}
	entries, err := os.ReadDir(conf)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("conformance cases not found: %v", err)
		}
		t.Logf("SKIPPING conformance cases in the snapshot test: %v", err)
		return dirs
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
			var whole collector
			ex := newExec(t, p, opts, &whole, files)
			events, err := querytest.Events(ex, files, runStart)
			require.NoError(t, err)
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
		})
		tested++
	}
	require.Greater(t, tested, 1)
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
