package actors

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// TestGatewayReferenceFile joins telemetry with a CSV reference file on
// every partition: the file is read once at deploy, and a missing file
// fails the deploy rather than a partition.
func TestGatewayReferenceFile(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "machines.csv")
	require.NoError(t, os.WriteFile(ref, []byte("id,machine\nd1,press\nd2,lathe\n"), 0o600))
	jobYAML := func(path string) []byte {
		return []byte(fmt.Sprintf(`name: enrich
query: SELECT t.deviceId, m.machine INTO o FROM telemetry t JOIN machines m ON t.deviceId = m.id
inputs: [{name: telemetry}, {name: machines, reference_file: %q}]
outputs: [{name: o, log: {}}]
`, path))
	}
	sink := &captureSink{}
	dead := NewDeadLetters(nil, "", nil)
	g := New(Config{Partitions: 4, Tick: time.Hour}, Rows(sink), dead)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()

	missing, err := config.ParseJob("job.yaml", jobYAML(filepath.Join(dir, "absent.csv")))
	require.NoError(t, err)
	err = g.Deploy(ctx, missing)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), `reference "machines"`)

	job, err := config.ParseJob("job.yaml", jobYAML(ref))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	for _, dev := range []string{"d1", "d2", "d3", "d1"} {
		require.NoError(t, g.Ingest("telemetry", dev, []byte(fmt.Sprintf(`{"deviceId":%q}`, dev))))
	}
	require.NoError(t, g.Drain(ctx))
	counters, err := g.JobCounters(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(4), counters["enrich"].EventsIn, "every device's events reach partition 0")
	require.Empty(t, dead.Counts())
	var got []string
	for _, r := range sink.rows["o"] {
		got = append(got, r.Vals[0].Str()+" "+r.Vals[1].Str())
	}
	require.ElementsMatch(t, []string{"d1 press", "d2 lathe", "d1 press"}, got, "d3 has no machine: an inner join drops it")
}

// TestGatewayGlobalJobsSeeEveryDevice runs jobs whose state is not keyed by
// the device (A4) on a gateway of 8 partitions: the events and the device
// liveness events of every partition reach partition 0, none twice.
func TestGatewayGlobalJobsSeeEveryDevice(t *testing.T) {
	clock := &testClock{}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock.t.Store(value.FromTime(t0))
	sink := &captureSink{}
	g := New(Config{Partitions: 8, Now: clock.now, Tick: time.Hour}, Rows(sink), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	for _, y := range []string{
		`name: total
query: SELECT COUNT(*) AS n, COUNT(DISTINCT deviceId) AS devices INTO o FROM telemetry GROUP BY TumblingWindow(minute, 1)
inputs: [{name: telemetry}]
outputs: [{name: o, log: {}}]
`, `name: online
query: SELECT COUNT(*) AS online INTO o2 FROM Devices WHERE status = 'online' GROUP BY TumblingWindow(minute, 1)
outputs: [{name: o2, log: {}}]
`} {
		job, err := config.ParseJob("job.yaml", []byte(y))
		require.NoError(t, err)
		require.NoError(t, g.Deploy(ctx, job))
	}
	const devices, each = 50, 3
	for i := 0; i < each; i++ {
		for d := 0; d < devices; d++ {
			dev := fmt.Sprintf("dev-%02d", d)
			require.NoError(t, g.Ingest("telemetry", dev, []byte(fmt.Sprintf(`{"deviceId":%q}`, dev))))
		}
	}
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))
	sink.mu.Lock()
	defer sink.mu.Unlock()
	require.Len(t, sink.rows["o"], 1)
	require.Equal(t, `{"n":150,"devices":50}`, string(value.AppendRecordJSON(nil, sink.rows["o"][0])))
	require.Len(t, sink.rows["o2"], 1)
	require.Equal(t, `{"online":50}`, string(value.AppendRecordJSON(nil, sink.rows["o2"][0])))
}
