package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// memoryJobs starts an in-memory one-partition gateway (cfg, a quiet
// logger) whose rows go to the returned sink, deploys the jobs given as
// YAML, and closes it when the test ends. dead may be nil.
func memoryJobs(t *testing.T, cfg Config, dead DeadLetterSink, jobs ...string) (*Gateway, *captureSink, context.Context) {
	t.Helper()
	rows := &captureSink{}
	cfg.Partitions, cfg.Logger = 1, slog.New(slog.NewTextHandler(io.Discard, nil))
	g := New(cfg, Rows(rows), dead)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		require.NoError(t, g.Close(ctx))
		cancel()
	})
	for _, y := range jobs {
		job, err := config.ParseJob("job.yaml", []byte(y))
		require.NoError(t, err)
		require.NoError(t, g.Deploy(ctx, job))
	}
	return g, rows, ctx
}

// panicOn makes job panic once on the event whose payload contains
// marker; it returns how many times it panicked.
func panicOn(t *testing.T, job, marker string, every bool) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	jobFault = func(name string, op *jobOp) {
		if name == job && op != nil && op.kind == opIngest && bytes.Contains(op.payload, []byte(marker)) && (every || n.Load() == 0) {
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
	dead := NewDeadLetters(nil, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	clock := &testClock{}
	clock.t.Store(value.FromTime(time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)))
	g, rows, ctx := memoryJobs(t, Config{BatchSize: 8, Tick: time.Hour, Now: clock.now}, dead,
		"name: fragile\nquery: SELECT v INTO fragile_out FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: fragile_out, log: {}}]\n",
		"name: steady\nquery: SELECT COUNT(*) AS n, SUM(v) AS total INTO steady_out FROM telemetry GROUP BY TumblingWindow(minute, 1)\ninputs: [{name: telemetry}]\noutputs: [{name: steady_out, log: {}}]\n")
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

// TestDurableJobPanicRestartsItAlone: durable, a job that panics once is
// rebuilt alone from the partition's checkpoint and log up to the entry
// it failed on, which it then applies again: the partition does not
// restart, and the outputs are exactly those of a run without the
// failure, nothing lost or twice.
func TestDurableJobPanicRestartsItAlone(t *testing.T) {
	panics := panicOn(t, "temps", `"press-13","seq":50,`, false)
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	requireExactAfterOneRestart(t, dir, job, st, outs, logger, outs, 0, 1)
	require.Equal(t, int64(1), panics.Load(), "the fault was not injected")
}

// TestDurableJobRebuildFailsRestartsThePartition: when a job cannot be
// rebuilt alone, its partition restarts and recovers every job from its
// checkpoint and log: exact all the same.
func TestDurableJobRebuildFailsRestartsThePartition(t *testing.T) {
	panics := panicOn(t, "temps", `"press-13","seq":50,`, false)
	jobRebuildFault = func() error { return errors.New("injected rebuild failure") }
	t.Cleanup(func() { jobRebuildFault = nil })
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	requireExactAfterOneRestart(t, dir, job, st, outs, logger, outs, 1, 0)
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

// TestReferenceDeadLettersOutsideAnyEvent: reference rows the job's
// schema rejects are dead-lettered when a partition makes the job's
// executor, outside any event. They are kept (at the partition's
// position), and neither a round with no work nor a durable recovery
// with no log trips over them.
func TestReferenceDeadLettersOutsideAnyEvent(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			dir := t.TempDir()
			ref := filepath.Join(dir, "machines.csv")
			require.NoError(t, os.WriteFile(ref, []byte("id,rate\nd1,1\nd2,notanumber\n"), 0o600))
			job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: enrich
query: CREATE TABLE machines (id nvarchar(max), rate bigint); SELECT t.deviceId, m.rate INTO o FROM telemetry t JOIN machines m ON t.deviceId = m.id
inputs: [{name: telemetry}, {name: machines, reference_file: %q}]
outputs: [{name: o, log: {}}]
`, ref)))
			require.NoError(t, err)
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			dead := NewDeadLetters(nil, "", logger)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var g *Gateway
			if durable {
				st, outs, _ := openStoreAndOutputs(t, dir)
				require.NoError(t, outs.Configure(job))
				g = New(Config{Partitions: 2, Tick: time.Hour, Store: st, Logger: logger}, outs, dead)
				require.NoError(t, g.Deploy(ctx, job))
				require.NoError(t, g.Recover(ctx), "a recovery with no log runs a round with no steps")
			} else {
				g = New(Config{Partitions: 1, Tick: time.Hour, Logger: logger}, Rows(&captureSink{}), dead)
				require.NoError(t, g.Deploy(ctx, job))
				// No job reads this input: a round with no work.
				require.NoError(t, g.Ingest("other", "d1", []byte(`{"deviceId":"d1"}`)))
				require.NoError(t, g.Drain(ctx))
			}
			defer func() { require.NoError(t, g.Close(ctx)) }()
			require.Equal(t, uint64(0), g.Restarts())
			kept, err := dead.List(0, 10)
			require.NoError(t, err)
			require.NotEmpty(t, kept)
			for _, k := range kept {
				require.Equal(t, exec.DeadLetterReference, k.Kind)
				require.Contains(t, string(k.Payload), "notanumber")
			}
		})
	}
}

// TestDevicesEventsToSeveralJobs: a device's status event goes to every
// job that reads Devices, each with its own copy of the record: a job
// whose schema converts the fields in place runs beside one that reads
// them as they are (run with -race).
func TestDevicesEventsToSeveralJobs(t *testing.T) {
	g, rows, ctx := memoryJobs(t, Config{BatchSize: 4, Tick: time.Hour}, nil,
		"name: typed\nquery: CREATE TABLE Devices (deviceId nvarchar(max), status nvarchar(max), lastSeen datetime); SELECT deviceId, status INTO typed_out FROM Devices\ninputs: [{name: telemetry}]\noutputs: [{name: typed_out, log: {}}]\n",
		"name: plain\nquery: SELECT deviceId, status INTO plain_out FROM Devices\ninputs: [{name: telemetry}]\noutputs: [{name: plain_out, log: {}}]\n")
	for i := 0; i < 50; i++ {
		require.NoError(t, g.Ingest("telemetry", fmt.Sprintf("d%02d", i), []byte(`{"v":1}`)))
	}
	require.NoError(t, g.Drain(ctx))
	require.Len(t, rows.rows["typed_out"], 50)
	require.Len(t, rows.rows["plain_out"], 50)
}

// TestMeasurePanicLeavesTheJobRunning: a job whose state measure panics
// (after its ops) is neither restarted nor asked again in a loop: it goes
// on with its state, every row out once.
func TestMeasurePanicLeavesTheJobRunning(t *testing.T) {
	var measures atomic.Int64
	jobFault = func(name string, op *jobOp) {
		if name == "fragile" && op == nil {
			measures.Add(1)
			panic("injected measure failure")
		}
	}
	t.Cleanup(func() { jobFault = nil })
	g, rows, ctx := memoryJobs(t, Config{BatchSize: 8, Tick: 5 * time.Millisecond}, nil,
		"name: fragile\nquery: SELECT v INTO fragile_out FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: fragile_out, log: {}}]\n")
	for i := 0; i < 100; i++ {
		require.NoError(t, g.Ingest("telemetry", "d", []byte(fmt.Sprintf(`{"v":%d}`, i))))
	}
	require.NoError(t, g.Drain(ctx))
	require.Eventually(t, func() bool { return measures.Load() >= 3 }, 10*time.Second, 5*time.Millisecond,
		"the ticks measure the job (a job not measured is taken as having state: its partition keeps ticking)")
	require.NoError(t, g.Drain(ctx), "the partition still answers")
	require.Zero(t, g.JobRestarts())
	require.Zero(t, g.Restarts())
	require.Len(t, rows.rows["fragile_out"], 100)
}

// TestDurableJobRebuiltAfterAFlush: a flush is not in the log, so the
// partition checkpoints after it; a job rebuilt later starts from there
// and does not open the windows the flush closed. The outputs equal those
// of the same run without the failure.
func TestDurableJobRebuiltAfterAFlush(t *testing.T) {
	run := func(t *testing.T, fault bool) (agg, hot []*value.Record) {
		if fault {
			panics := panicOn(t, "temps", `"press-13","seq":50,`, false)
			defer func() { require.Equal(t, int64(1), panics.Load(), "the fault was not injected") }()
		}
		dir := t.TempDir()
		job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
		require.NoError(t, err)
		clock := &testClock{}
		d := openDurable(t, dir, job, Config{Partitions: 2, Tick: time.Hour, CheckpointInterval: time.Hour, SyncInterval: time.Microsecond, Now: clock.now})
		g := d.g
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ingestReadings(t, g, clock, 0, 1000)
		require.NoError(t, g.Drain(ctx))
		require.NoError(t, g.FlushWindows(ctx))
		ingestReadings(t, g, clock, 1000, 2000)
		require.NoError(t, g.Drain(ctx))
		require.NoError(t, g.FlushWindows(ctx))
		d.waitDelivered(t)
		if fault {
			require.Equal(t, uint64(1), g.JobRestarts())
		}
		require.Zero(t, g.Restarts())
		d.close(t)
		return readOutput(t, filepath.Join(dir, "agg.jsonl")), readOutput(t, filepath.Join(dir, "hot.jsonl"))
	}
	wantAgg, wantHot := run(t, false)
	gotAgg, gotHot := run(t, true)
	requireSameRows(t, wantAgg, gotAgg, "agg")
	requireSameRows(t, wantHot, gotHot, "hot")
}

// TestDurableJobDeployedAfterTheCheckpointRebuiltFromItsDeploy: a job
// redeployed while its partitions had applied entries past their last
// checkpoint (the checkpoint Deploy takes is skipped here, as when
// batches come between the deploy and it, or it fails) started empty at
// its deploy position. Rebuilt after a panic, it gets neither the old
// version's checkpointed state nor the entries before that position: it
// counts exactly the readings that came after its deploy.
func TestDurableJobDeployedAfterTheCheckpointRebuiltFromItsDeploy(t *testing.T) {
	dir := t.TempDir()
	cntPath := filepath.Join(dir, "cnt.jsonl")
	cntJob := func(extra string) *pb.Job {
		j, err := config.ParseJob("cnt.yaml", []byte(fmt.Sprintf(`name: cnt
query: SELECT deviceId, COUNT(*) AS n%s INTO cnt FROM readings TIMESTAMP BY eventTime GROUP BY deviceId, TumblingWindow(hour, 1)
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: cnt, file: {path: %q}}]
`, extra, cntPath)))
		require.NoError(t, err)
		return j
	}
	st, outs, logger := openStoreAndOutputs(t, dir)
	clock := &testClock{}
	g := New(Config{Partitions: 2, Tick: time.Hour, CheckpointInterval: time.Hour, SyncInterval: time.Microsecond, Store: st, Logger: logger, Now: clock.now}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v1 := cntJob("")
	require.NoError(t, outs.Configure(v1))
	require.NoError(t, g.Deploy(ctx, v1))
	require.NoError(t, g.Recover(ctx))
	ingestReadings(t, g, clock, 0, 200)
	require.NoError(t, g.Drain(ctx))
	v2 := cntJob(", MAX(seq) AS last")
	require.NoError(t, outs.Configure(v2))
	g.ready.Store(false) // no checkpoint after this deploy
	require.NoError(t, g.Deploy(ctx, v2))
	g.ready.Store(true)
	_, marker := reading(205)
	panics := panicOn(t, "cnt", string(marker[:30]), false)
	ingestReadings(t, g, clock, 200, 300)
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))
	(&durableGateway{g: g, outs: outs, store: st}).waitDelivered(t)
	require.Equal(t, int64(1), panics.Load(), "the fault was not injected")
	require.Equal(t, uint64(1), g.JobRestarts())
	counted := 0
	for _, r := range readOutput(t, cntPath) {
		if _, v2row := r.Get("last"); v2row {
			n, _ := r.Get("n")
			counted += int(n.Int())
		}
	}
	require.Equal(t, 100, counted, "the new version counts the readings after its deploy, each once")
	require.NoError(t, g.Close(ctx))
}
