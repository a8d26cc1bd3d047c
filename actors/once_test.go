package actors

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// TestMessageReadByTwoJobsCountedOnce: a message that two jobs read (one
// keyed by device, one global on partition 0) is one ingest log entry,
// one event in, one message of its device, and one resend check; each
// job gets it. (The kill -9 tests of cmd/millstream replay such entries:
// their two jobs read one topic.)
func TestMessageReadByTwoJobsCountedOnce(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: 4})
	require.NoError(t, err)
	defer st.Close()
	var mu sync.Mutex
	rows := map[string]int{}
	sink := &countingDurableSink{Outputs: NewOutputs(nil, nil), rows: rows, mu: &mu}
	jobs := []string{`name: perdevice
query: SELECT deviceId, seq INTO o FROM readings
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: o, log: {}}]
`, `name: global
query: SELECT COUNT(*) AS n INTO o FROM telemetry GROUP BY TumblingWindow(day, 1)
inputs: [{name: telemetry, topic: "devices/+/messages/events"}]
outputs: [{name: o, log: {}}]
`}
	start := func() *Gateway {
		g := New(Config{Partitions: 4, Store: st, SequenceField: "seq", Tick: time.Hour, SyncInterval: time.Microsecond, CheckpointInterval: time.Hour}, sink, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, y := range jobs {
			j, err := config.ParseJob("j.yaml", []byte(y))
			require.NoError(t, err)
			require.NoError(t, g.Deploy(ctx, j))
		}
		require.NoError(t, g.Recover(ctx))
		return g
	}
	g := start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 10
	for i := 0; i < n; i++ {
		payload := []byte(fmt.Sprintf(`{"deviceId":"press-1","seq":%d,"t":"2026-12-05T08:00:%02dZ"}`, i, i))
		took, err := g.IngestTopic("devices/press-1/messages/events", payload)
		require.NoError(t, err)
		require.Equal(t, 2, took, "both job inputs take it")
	}
	require.NoError(t, g.Drain(ctx))
	// Before the flush, which checkpoints (and so truncates the log).
	logged := 0
	for p := 0; p < 4; p++ {
		require.NoError(t, st.ReadLog(p, 0, func(_ uint64, e *pb.LogEntry) error {
			if !e.Tick && !e.Forwarded && !e.Mark {
				logged++
				require.Len(t, e.Targets, 2)
			}
			return nil
		}))
	}
	require.Equal(t, n, logged, "one log entry per message, not one per job input")
	require.NoError(t, g.FlushWindows(ctx))
	require.Equal(t, uint64(n), g.Stats().EventsIn, "counted once per message")
	dev, err := g.Device(ctx, "press-1")
	require.NoError(t, err)
	require.Equal(t, uint64(n), dev.Messages, "one message of its device each")
	require.Zero(t, g.DurableStats().Duplicates, "the second job's copy is not a resend")
	mu.Lock()
	require.Equal(t, map[string]int{"perdevice": n, "global": 1}, copyCounts(rows))
	require.Equal(t, int64(n), sink.lastN, "the global job (fed by forwards to partition 0) counted each message once")
	mu.Unlock()
	require.NoError(t, g.Close(ctx))
}

func copyCounts(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// countingDurableSink counts rows per job on their way into the outbox.
type countingDurableSink struct {
	*Outputs
	mu    *sync.Mutex
	rows  map[string]int
	lastN int64
}

func (c *countingDurableSink) Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool) {
	c.mu.Lock()
	c.rows[job]++
	if v, ok := rec.Get("n"); ok {
		c.lastN = v.Int()
	}
	c.mu.Unlock()
	return c.Outputs.Encode(job, output, ts, rec, id)
}
