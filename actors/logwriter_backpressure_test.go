package actors

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
)

// TestLogWriterBackPressure: a durable gateway takes device input faster
// than it commits (one commit per 100 ms here); input that is not acked
// (QoS 0, IngestTopicAsync without a wait) must not pile up in memory: the
// events taken and not yet applied stay under MaxQueuedBytes (plus the one
// message being admitted), the publisher waits instead, and every event
// still counts once.
func TestLogWriterBackPressure(t *testing.T) {
	dir := t.TempDir()
	st, outs, logger := openStoreAndOutputs(t, dir)
	const limit = 64 << 10
	g := New(Config{Partitions: 2, Tick: time.Hour, SyncInterval: 100 * time.Millisecond, CheckpointInterval: time.Hour,
		MaxQueuedBytes: limit, Store: st, Logger: logger}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: count
query: SELECT COUNT(*) AS n INTO o FROM readings GROUP BY TumblingWindow(day, 1)
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: o, file: {path: %q}}]
`, dir+"/o.jsonl")))
	require.NoError(t, err)
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))

	const events, size = 200, 4 << 10
	pad := strings.Repeat("x", size)
	start := time.Now()
	for i := 0; i < events; i++ {
		n, _, err := g.IngestTopicAsync(fmt.Sprintf("devices/d%d/messages/events", i%7), []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad)))
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	took := time.Since(start)
	require.NoError(t, g.Drain(ctx))
	g.log.mu.Lock()
	peak := g.log.peakQueued
	g.log.mu.Unlock()
	t.Logf("%d events of %d KiB taken in %v; peak %d KiB held, limit %d KiB; %d waits", events, size>>10, took.Round(time.Millisecond), peak>>10, limit>>10, g.DurableStats().IngestWaits)
	// The message being admitted, and 128 bytes for each event forwarded to
	// partition 0 (sharing its payload), may go past it.
	require.LessOrEqual(t, peak, int64(limit+2*size), "held over the limit")
	require.NotZero(t, g.DurableStats().IngestWaits, "the publisher waited")
	require.Greater(t, took, 500*time.Millisecond, "about 800 KiB through 64 KiB per 100 ms commit")
	require.NoError(t, g.FlushWindows(ctx))
	require.Eventually(t, func() bool {
		g.log.mu.Lock()
		defer g.log.mu.Unlock()
		return g.log.queuedBytes == 0
	}, 10*time.Second, 10*time.Millisecond, "every applied event gives its bytes back")
	require.NoError(t, g.Close(ctx))
	require.Eventually(t, func() bool { return len(readOutput(t, dir+"/o.jsonl")) == 1 }, 10*time.Second, 10*time.Millisecond, "the count row is delivered")
	rows := readOutput(t, dir+"/o.jsonl")
	n, _ := rows[0].Get("n")
	require.Equal(t, int64(events), n.Int(), "every event counted once")
}
