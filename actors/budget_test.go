package actors

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// TestJobOverBudgetStoppedAlone: a COUNT(DISTINCT) over ever new keys
// goes over its 1 MiB budget and is stopped, with the reason in its
// status and the log, and its state let go; the job beside it runs on,
// and deploying the job again starts it afresh.
func TestJobOverBudgetStoppedAlone(t *testing.T) {
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	var mu sync.Mutex
	rows := map[string]int{}
	sink := sinkFunc(func(job, _ string, _ int64, _ *value.Record) {
		mu.Lock()
		rows[job]++
		mu.Unlock()
	})
	clock := &testClock{}
	start, _ := value.ParseTime("2026-12-05T08:00:00Z")
	clock.t.Store(start)
	g := New(Config{Partitions: 4, Tick: time.Hour, Now: clock.now, Logger: logger}, Rows(sink), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer g.Close(ctx)
	greedy, err := config.ParseJob("g.yaml", []byte(`name: greedy
query: SELECT COUNT(DISTINCT serial) AS parts INTO o FROM telemetry GROUP BY TumblingWindow(day, 1)
inputs: [{name: telemetry}]
outputs: [{name: o, log: {}}]
max_state_bytes: 1048576
`))
	require.NoError(t, err)
	hot, err := config.ParseJob("h.yaml", []byte(`name: hot
query: SELECT deviceId, temperature INTO o FROM telemetry WHERE temperature > 100
inputs: [{name: telemetry}]
outputs: [{name: o, log: {}}]
`))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, greedy))
	require.NoError(t, g.Deploy(ctx, hot))
	send := func(from, to int) {
		for i := from; i < to; i++ {
			dev := fmt.Sprintf("press-%d", i%8)
			require.NoError(t, g.Ingest("telemetry", dev, []byte(fmt.Sprintf(`{"deviceId":%q,"serial":"SN-%09d","temperature":%d}`, dev, i, 90+i%20))))
		}
		clock.t.Add(3 * value.TicksPerSecond)
		g.tick()
		require.NoError(t, g.Drain(ctx))
	}
	send(0, 1000)
	require.Empty(t, g.JobStatuses()["greedy"].Stopped, "well under its budget")
	require.Positive(t, g.JobStatuses()["greedy"].StateBytes)
	for i := 1; i < 20 && g.JobStatuses()["greedy"].Stopped == ""; i++ {
		send(i*5000, (i+1)*5000)
	}
	st := g.JobStatuses()["greedy"]
	require.Contains(t, st.Stopped, "over its budget of 1 MiB")
	require.Equal(t, int64(1<<20), st.Budget)
	require.NoError(t, g.Drain(ctx))
	require.Zero(t, g.JobStatuses()["greedy"].StateBytes, "its state is let go")
	logMu.Lock()
	require.Contains(t, logs.String(), "job over its memory budget")
	logMu.Unlock()

	mu.Lock()
	hotBefore := rows["hot"]
	mu.Unlock()
	send(200000, 201000)
	mu.Lock()
	require.Equal(t, hotBefore+450, rows["hot"], "the other job runs on")
	mu.Unlock()
	require.Empty(t, g.JobStatuses()["hot"].Stopped)
	require.Equal(t, uint64(1), g.jobsStopped.Load())

	require.NoError(t, g.Deploy(ctx, greedy))
	send(300000, 300100)
	st = g.JobStatuses()["greedy"]
	require.Empty(t, st.Stopped, "deployed again: running")
	require.Positive(t, st.StateBytes)
}

type sinkFunc func(job, output string, ts int64, rec *value.Record)

func (f sinkFunc) Write(job, output string, ts int64, rec *value.Record) { f(job, output, ts, rec) }
