package actors

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// TestLogWriterActorPanicsLoseNothing: the ingest log writer actor
// panics once before a commit's write, once after it, and once while
// handing a commit's events to their partitions. Each time it restarts:
// the events not written are refused and sent again (as a publisher
// does), those written are acknowledged, the partitions it touched reload
// from their log, and the outputs equal one uninterrupted run's: nothing
// lost, nothing counted twice (without sequence numbers to drop resends).
func TestLogWriterActorPanicsLoseNothing(t *testing.T) {
	noLeaks(t)
	var commits atomic.Int64
	panicAt := map[string]int64{"before-append": 100, "after-append": 250, "sent-group": 400}
	logCommitFault = func(stage string) {
		if stage == "before-append" {
			commits.Add(1)
		}
		if n, ok := panicAt[stage]; ok && commits.Load() == n {
			panic("test: the log writer fails at " + stage)
		}
	}
	defer func() { logCommitFault = nil }()
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	clock := &testClock{}
	d := openDurable(t, dir, job, Config{Partitions: 4, Tick: time.Hour, SyncInterval: time.Microsecond, Now: clock.now})
	refused := 0
	for i := 0; i < 900; i++ {
		clock.t.Store(value.FromTime(readingTime(i)))
		dev, payload := reading(i)
		for {
			_, err := d.g.IngestTopic("devices/"+dev+"/messages/events", payload)
			if err == nil {
				break
			}
			require.ErrorIs(t, err, ErrLogWriterRestarted)
			refused++ // the publisher sends it again
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.g.Drain(ctx))
	require.NoError(t, d.g.FlushWindows(ctx))
	require.Equal(t, uint64(3), d.g.DurableStats().LogWriterRestarts)
	require.Equal(t, 1, refused, "the commit that failed before its write")
	d.waitDelivered(t)
	d.close(t)
	want := expectedRows(t, job, 900)
	requireSameRows(t, want["agg"], readOutput(t, filepath.Join(dir, "agg.jsonl")), "agg")
	requireSameRows(t, want["hot"], readOutput(t, filepath.Join(dir, "hot.jsonl")), "hot")
}
