package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// blockingSink holds every row until released.
type blockingSink struct {
	release chan struct{}
	rows    atomic.Int64
}

func (b *blockingSink) Write(string, string, int64, *value.Record) {
	<-b.release
	b.rows.Add(1)
}

// TestGatewayBackpressureBoundsMemory: when a partition cannot keep up,
// Ingest blocks after a bounded number of events instead of queueing
// without limit (A3), and once the partition catches up every event is
// processed, none lost.
func TestGatewayBackpressureBoundsMemory(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	g := New(Config{Partitions: 1, BatchSize: 1, MailboxSize: 2, BatchDelay: time.Hour, Tick: time.Hour}, Rows(sink), nil)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))

	const n = 100
	var accepted atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := g.Ingest("telemetry", "d", []byte(fmt.Sprintf(`{"v":%d}`, i))); err != nil {
				done <- err
				return
			}
			accepted.Add(1)
		}
		done <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	stalled := accepted.Load()
	// One row in the blocked sink, the mailbox (2 batches of 1) and the
	// Send that waits for room: a handful, not n.
	require.LessOrEqual(t, stalled, int64(5), "Ingest did not block while the partition was stuck")
	require.Zero(t, sink.rows.Load())

	close(sink.release)
	require.NoError(t, <-done)
	require.NoError(t, g.Drain(ctx))
	require.Equal(t, int64(n), sink.rows.Load(), "events lost under backpressure")
	require.NoError(t, g.Close(ctx))
}
