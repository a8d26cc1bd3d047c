package exec_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// FuzzIngest feeds arbitrary payloads (one per line) through a plan with a
// pass-through output and a windowed aggregate, some lines from merged
// sources. The executor must not
// panic, and every event must be accounted for: emitted raw, dropped by a
// policy, or dead-lettered.
func FuzzIngest(f *testing.F) {
	f.Add([]byte(`{"deviceId":"a","temperature":71,"t":"2026-01-01T00:00:00Z"}
{"deviceId":"a","temperature":"x","t":"2026-01-01T00:00:01Z"}
{"deviceId":"b","temperature":90,"t":"2026-01-01T00:00:00.5Z"}
not json
{"deviceId":"a","temperature":1e308,"t":"2026-01-01T00:10:00Z"}`))
	f.Add([]byte(`{"t":"2026-01-01T00:00:00Z","deviceId":{"nested":[1,2]},"temperature":null}`))
	p, err := plan.FromSQL(`SELECT * INTO raw FROM i TIMESTAMP BY t
		SELECT deviceId, AVG(temperature) AS a, MAX(temperature) AS m, COUNT(DISTINCT temperature) AS d
		INTO agg FROM i TIMESTAMP BY t GROUP BY deviceId, HoppingWindow(second, 2, 1)`)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := 0
		ex, err := exec.New(p, exec.Options{OutOfOrderTolerance: 1e9, Emit: func(out string, _ int64, rec *value.Record) {
			if out == "raw" {
				raw++
			}
			_ = value.AppendRecordJSON(nil, rec)
		}})
		if err != nil {
			t.Fatal(err)
		}
		arrival, _ := value.ParseTime("2026-01-01T00:00:00Z")
		for i, line := range bytes.Split(data, []byte("\n")) {
			arrival += value.TicksPerSecond
			// Lines come from no source, source 0 or source 1 in turn, so
			// merged watermarks (IngestFrom) are fuzzed too.
			if err := ex.IngestFrom("i", i%3-1, line, arrival); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := ex.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		again, err := exec.New(p, exec.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := again.Restore(snap); err != nil {
			t.Fatalf("restore of a fresh snapshot: %v", err)
		}
		ex.Flush()
		c := ex.Counters()
		dropped := c.LateDropped + c.OutOfOrderDropped + c.EarlyDropped
		if uint64(raw)+dropped > c.EventsIn || uint64(raw)+dropped+c.DeadLettered < c.EventsIn {
			t.Fatalf("events unaccounted for: in %d, raw out %d, dropped %d, dead-lettered %d", c.EventsIn, raw, dropped, c.DeadLettered)
		}
	})
}

// FuzzRestore hands Restore arbitrary snapshot bytes, seeded with real
// snapshots of a plan with windows, joins and analytic state: a damaged
// or hostile checkpoint is an error, never a panic, and an executor that
// restored one without an error goes on ingesting and snapshotting.
func FuzzRestore(f *testing.F) {
	p, err := plan.FromSQL(`WITH l AS (SELECT deviceId, temperature, t, LAG(temperature) OVER (PARTITION BY deviceId LIMIT DURATION(minute, 5)) AS prev FROM i TIMESTAMP BY t)
		SELECT deviceId, AVG(temperature) AS a, COUNT(DISTINCT prev) AS d INTO agg FROM l GROUP BY deviceId, SlidingWindow(second, 10)
		SELECT x.deviceId, y.temperature INTO j FROM i x TIMESTAMP BY t JOIN i y TIMESTAMP BY t ON x.deviceId = y.deviceId AND DATEDIFF(second, x, y) BETWEEN 0 AND 5`)
	if err != nil {
		f.Fatal(err)
	}
	ex, err := exec.New(p, exec.Options{OutOfOrderTolerance: 1e9})
	if err != nil {
		f.Fatal(err)
	}
	arrival, _ := value.ParseTime("2026-01-01T00:00:00Z")
	for i, line := range []string{
		`{"deviceId":"a","temperature":71,"t":"2026-01-01T00:00:00Z"}`,
		`{"deviceId":"b","temperature":90,"t":"2026-01-01T00:00:01Z"}`,
		`{"deviceId":"a","temperature":72,"t":"2026-01-01T00:00:03Z"}`,
	} {
		if err := ex.Ingest("i", []byte(line), arrival+int64(i)*value.TicksPerSecond); err != nil {
			f.Fatal(err)
		}
		snap, err := ex.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(snap)
	}
	first, err := ex.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	var valid pb.ExecutorSnapshot
	if err := proto.Unmarshal(first, &valid); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, snap []byte) {
		ex, err := exec.New(p, exec.Options{OutOfOrderTolerance: 1e9})
		if err != nil {
			t.Fatal(err)
		}
		// Past the plan check, so that the fuzzer reaches the restore of
		// each operator.
		var s pb.ExecutorSnapshot
		if proto.Unmarshal(snap, &s) == nil {
			s.PlanFingerprint = valid.PlanFingerprint
			snap, _ = proto.Marshal(&s)
		}
		if ex.Restore(snap) != nil {
			return
		}
		for i := 0; i < 3; i++ {
			_ = ex.Ingest("i", []byte(`{"deviceId":"a","temperature":70,"t":"2026-01-01T00:00:05Z"}`), arrival+int64(10+i)*value.TicksPerSecond)
		}
		ex.Flush()
		if _, err := ex.Snapshot(); err != nil {
			t.Fatalf("snapshot after a restore that succeeded: %v", err)
		}
	})
}

// TestRestoredRowsKeepTheirTimeline: a buffered row comes back in the
// timeline it is stored under, whatever timeline number the checkpoint
// gives it. FuzzRestore found a checkpoint whose row said 32,544,384: the
// next stage grew its per-timeline state to that many entries (13 s of
// CPU for one restore).
func TestRestoredRowsKeepTheirTimeline(t *testing.T) {
	p, err := plan.FromSQL(`SELECT deviceId, COUNT(*) AS n INTO agg FROM i TIMESTAMP BY t OVER deviceId GROUP BY deviceId, TumblingWindow(second, 10)`)
	require.NoError(t, err)
	ex, err := exec.New(p, exec.Options{OutOfOrderTolerance: time.Minute})
	require.NoError(t, err)
	arrival, _ := value.ParseTime("2026-01-01T00:00:00Z")
	for i, line := range []string{
		`{"deviceId":"a","t":"2026-01-01T00:00:05Z"}`,
		`{"deviceId":"b","t":"2026-01-01T00:00:06Z"}`,
	} {
		require.NoError(t, ex.Ingest("i", []byte(line), arrival+int64(i)))
	}
	snap, err := ex.Snapshot()
	require.NoError(t, err)
	var s pb.ExecutorSnapshot
	require.NoError(t, proto.Unmarshal(snap, &s))
	rows := 0
	for _, in := range s.Inputs {
		for _, tl := range in.Timelines {
			for _, r := range tl.Buffered {
				r.Timeline = 1 << 30
				rows++
			}
		}
	}
	require.NotZero(t, rows, "no buffered row: the test shows nothing")
	hostile, err := proto.Marshal(&s)
	require.NoError(t, err)

	again, err := exec.New(p, exec.Options{OutOfOrderTolerance: time.Minute})
	require.NoError(t, err)
	require.NoError(t, again.Restore(hostile))
	back, err := again.Snapshot()
	require.NoError(t, err)
	var got pb.ExecutorSnapshot
	require.NoError(t, proto.Unmarshal(back, &got))
	for _, in := range got.Inputs {
		for i, tl := range in.Timelines {
			for _, r := range tl.Buffered {
				require.EqualValues(t, i, r.Timeline, "a restored row left its timeline")
			}
		}
	}
}
