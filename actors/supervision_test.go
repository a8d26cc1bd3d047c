package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// faultySink panics once, on the row with v = 13 (fault injection).
type faultySink struct {
	panicked atomic.Bool
	rows     atomic.Int64
	last     atomic.Int64
}

func (f *faultySink) Write(_, _ string, _ int64, rec *value.Record) {
	v, _ := rec.Get("v")
	if v.Int() == 13 && f.panicked.CompareAndSwap(false, true) {
		panic("injected sink failure")
	}
	f.rows.Add(1)
	f.last.Store(v.Int())
}

// TestSinkPanicRestartsTheJob: a row writer that panics fails the job
// actor that encoded the row (rows are encoded there); its supervisor
// restarts the job alone and it keeps processing; the restart is counted.
// In memory the event the job failed on is lost: it is dead-lettered
// (TestJobPanicRestartsItAlone).
func TestSinkPanicRestartsTheJob(t *testing.T) {
	sink := &faultySink{}
	g := New(Config{Partitions: 1, BatchSize: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Rows(sink), nil)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	for i := 0; i < 100; i++ {
		require.NoError(t, g.Ingest("telemetry", "d", []byte(fmt.Sprintf(`{"v":%d}`, i))))
	}
	require.Eventually(t, func() bool { return sink.last.Load() == 99 }, 10*time.Second, 5*time.Millisecond,
		"the job did not come back after the failure")
	require.NoError(t, g.Drain(ctx))
	require.True(t, sink.panicked.Load())
	require.Equal(t, uint64(1), g.JobRestarts())
	require.Equal(t, uint64(0), g.Restarts(), "the partition did not restart")
	require.Equal(t, int64(99), sink.rows.Load(), "only the failed row is missing")
	require.NoError(t, g.Close(ctx))
}
