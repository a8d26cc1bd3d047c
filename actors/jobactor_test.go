package actors

import (
	"bytes"
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
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// panicOn makes job panic once on the event whose payload contains
// marker; it returns how many times it panicked.
func panicOn(t *testing.T, job, marker string, every bool) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	jobFault = func(name string, op *jobOp) {
		if name == job && op.kind == opIngest && bytes.Contains(op.payload, []byte(marker)) && (every || n.Load() == 0) {
			n.Add(1)
			panic("injected job failure")
		}
	}
	t.Cleanup(func() { jobFault = nil })
	return &n
}

// TestJobPanicRestartsItAlone: in memory, a job that panics on an event
// is restarted alone. The event is dead-lettered for that job; the other
// job on the same partition keeps its open window (its count has every
// event) and the partition is not restarted.
func TestJobPanicRestartsItAlone(t *testing.T) {
	panics := panicOn(t, "fragile", `"v":13}`, false)
	rows := &captureSink{}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dead := NewDeadLetters(nil, "", logger)
	clock := &testClock{}
	clock.t.Store(value.FromTime(time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)))
	g := New(Config{Partitions: 1, BatchSize: 8, Tick: time.Hour, Logger: logger, Now: clock.now}, Rows(rows), dead)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	for _, y := range []string{
		"name: fragile\nquery: SELECT v INTO fragile_out FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: fragile_out, log: {}}]\n",
		"name: steady\nquery: SELECT COUNT(*) AS n, SUM(v) AS total INTO steady_out FROM telemetry GROUP BY TumblingWindow(minute, 1)\ninputs: [{name: telemetry}]\noutputs: [{name: steady_out, log: {}}]\n",
	} {
		job, err := config.ParseJob("job.yaml", []byte(y))
		require.NoError(t, err)
		require.NoError(t, g.Deploy(ctx, job))
	}
	for i := 0; i < 100; i++ {
		require.NoError(t, g.Ingest("telemetry", "d", []byte(fmt.Sprintf(`{"v":%d}`, i))))
	}
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))

	require.Equal(t, int64(1), panics.Load(), "the fault was not injected")
	require.Equal(t, uint64(1), g.JobRestarts())
	require.Equal(t, uint64(0), g.Restarts(), "the partition itself did not restart")
	st := g.JobStatuses()
	require.Equal(t, uint64(1), st["fragile"].Restarts)
	require.Equal(t, uint64(0), st["steady"].Restarts)
	require.Positive(t, st["steady"].WorkSeconds, "a job's work time is its own")
	var got []int64
	for _, r := range rows.rows["fragile_out"] {
		v, _ := r.Get("v")
		got = append(got, v.Int())
	}
	var want []int64
	for i := int64(0); i < 100; i++ {
		if i != 13 {
			want = append(want, i)
		}
	}
	require.Equal(t, want, got, "every event but the one it failed on, in order, once")
	steady := rows.rows["steady_out"]
	require.Len(t, steady, 1)
	n, _ := steady[0].Get("n")
	total, _ := steady[0].Get("total")
	require.Equal(t, int64(100), n.Int(), "the other job's window kept every event")
	require.Equal(t, int64(99*100/2), total.Int())
	kept, err := dead.List(0, 10)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, DeadLetterPoison, kept[0].Kind)
	require.Equal(t, "fragile", kept[0].Job)
	require.Contains(t, kept[0].Reason, "injected job failure")
	require.Equal(t, `{"v":13}`, string(kept[0].Payload))
}

// TestDurableJobPanicRecoversExactly: durable, a job that panics once
// restarts its partition, which recovers every job's state from the
// checkpoint and the log: the outputs are exactly those of a run without
// the failure, nothing lost or twice.
func TestDurableJobPanicRecoversExactly(t *testing.T) {
	panics := panicOn(t, "temps", `"press-13","seq":50,`, false)
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	requireExactAfterOneRestart(t, dir, job, st, outs, logger, outs)
	require.Equal(t, int64(1), panics.Load(), "the fault was not injected")
}

// TestSetRowIDReplacesThePlaceholder: a row encoded with the placeholder
// id carries the id its partition gives it, in the entry and the payload;
// a payload without the placeholder (a log line) is left as it is.
func TestSetRowIDReplacesThePlaceholder(t *testing.T) {
	rec := &value.Record{Names: []string{"v"}, Vals: []value.Value{value.Int(7)}}
	e := rowEntry(rowIDPlaceholder, rec)
	setRowID(e, "0123456789abcdef")
	require.Equal(t, "0123456789abcdef", e.Id)
	require.Equal(t, `{"_id":"0123456789abcdef","v":7}`, string(e.Payload))
	line := []byte(`job/out 2026-01-01T00:00:00Z {"v":7}`)
	e = &pb.OutboxEntry{Id: rowIDPlaceholder, Payload: append([]byte(nil), line...)}
	setRowID(e, "0123456789abcdef")
	require.Equal(t, "0123456789abcdef", e.Id)
	require.Equal(t, line, e.Payload)
}
