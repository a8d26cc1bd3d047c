package exec_test

import (
	"bytes"
	"testing"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
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
