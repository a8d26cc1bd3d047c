package actors

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// windowJobYAML is the temperature job with event time and 30 s windows,
// writing to files under dir.
func windowJobYAML(dir string) string {
	return fmt.Sprintf(`name: temps
query: |
  SELECT deviceId, AVG(temperature) AS avgTemp, COUNT(*) AS n, System.Timestamp() AS windowEnd
  INTO agg FROM readings TIMESTAMP BY eventTime
  GROUP BY deviceId, TumblingWindow(second, 30)
  SELECT deviceId, temperature, seq INTO hot FROM readings TIMESTAMP BY eventTime WHERE temperature > 90
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs:
  - {name: agg, file: {path: %q}}
  - {name: hot, file: {path: %q}}
`, filepath.Join(dir, "agg.jsonl"), filepath.Join(dir, "hot.jsonl"))
}

// reading is the n-th test event: 20 devices, one reading per device
// every 1.5 s of event time, in order.
func reading(n int) (device string, payload []byte) {
	dev := fmt.Sprintf("press-%02d", n%20)
	temp := 60 + (n*37)%45
	return dev, []byte(fmt.Sprintf(`{"deviceId":%q,"seq":%d,"temperature":%d,"eventTime":%q}`, dev, n/20, temp, readingTime(n).Format(time.RFC3339Nano)))
}

func readingTime(n int) time.Time {
	return time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).Add(time.Duration(n/20) * 1500 * time.Millisecond)
}

// expectedRows runs the job's query over readings [0, n) on one executor
// and flushes: what any run, interrupted or not, must produce.
func expectedRows(t *testing.T, job *pb.Job, n int) map[string][]*value.Record {
	t.Helper()
	p, err := plan.FromSQL(job.Query)
	require.NoError(t, err)
	rows := map[string][]*value.Record{}
	opts, err := config.ExecOptions(job)
	require.NoError(t, err)
	opts.Emit = func(out string, _ int64, rec *value.Record) {
		rows[strings.ToLower(out)] = append(rows[strings.ToLower(out)], rec.Clone())
	}
	ex, err := exec.New(p, opts)
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		_, payload := reading(i)
		require.NoError(t, ex.Ingest("readings", payload, value.FromTime(readingTime(i))))
	}
	ex.Flush()
	return rows
}

// readOutput reads a JSON-lines output, checks every "_id" is unique and
// returns the rows without it.
func readOutput(t *testing.T, path string) []*value.Record {
	var out []*value.Record
	for _, v := range readOutputValues(t, path) {
		out = append(out, v.Record())
	}
	return out
}

func readOutputValues(t *testing.T, path string) []value.Value {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	ids := map[string]bool{}
	var data []byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		var id string
		require.NoError(t, json.Unmarshal(m["_id"], &id))
		require.False(t, ids[id], "duplicate _id %s in %s", id, path)
		ids[id] = true
		delete(m, "_id")
		line, err := json.Marshal(m)
		require.NoError(t, err)
		data = append(append(data, line...), '\n')
	}
	rows, err := querytest.ReadJSONLines(data)
	require.NoError(t, err)
	return rows
}

type durableGateway struct {
	dir   string // the store's directory
	g     *Gateway
	outs  *Outputs
	store *state.Store
}

func openDurable(t *testing.T, dir string, job *pb.Job, cfg Config) *durableGateway {
	t.Helper()
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: cfg.Partitions})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	cfg.Store, cfg.Logger = st, logger
	g := New(cfg, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	return &durableGateway{dir: filepath.Join(dir, "state"), g: g, outs: outs, store: st}
}

// openMemory is openDurable without a store: the outbox is in memory.
func openMemory(t *testing.T, job *pb.Job, cfg Config) *durableGateway {
	t.Helper()
	outs := NewOutputs(nil, io.Discard)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	g := New(cfg, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	return &durableGateway{g: g, outs: outs}
}

func (d *durableGateway) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.g.Close(ctx))
	require.NoError(t, d.outs.Close())
	if d.store != nil {
		require.NoError(t, d.store.Close())
	}
}

// waitDelivered waits until the partitions applied what they were sent
// and every outbox is empty.
func (d *durableGateway) waitDelivered(t *testing.T) {
	t.Helper()
	// The rows of events logged but not applied yet are not in an
	// outbox: an empty backlog says nothing until the partitions have
	// applied what they were sent (the metadata test found no row, 1 run
	// in 30).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, d.g.Drain(ctx))
	require.Eventually(t, func() bool {
		for _, s := range d.outs.Status() {
			if s.Backlog > 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "outboxes did not drain: %+v", d.outs.Status())
}

// ingestReadings ingests readings [from, to), each arriving at its event
// time (the gateway's clock is clock).
func ingestReadings(t *testing.T, g *Gateway, clock *testClock, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		clock.t.Store(value.FromTime(readingTime(i)))
		dev, payload := reading(i)
		n, err := g.IngestTopic("devices/"+dev+"/messages/events", payload)
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
}

func requireSameRows(t *testing.T, want, got []*value.Record, what string) {
	t.Helper()
	// Through JSON, as the output files hold them (times become strings).
	var data []byte
	for _, r := range want {
		data = append(value.AppendRecordJSON(data, r), '\n')
	}
	wantVals, err := querytest.ReadJSONLines(data)
	require.NoError(t, err)
	diff := querytest.CompareRows(wantVals, got, querytest.CompareOptions{})
	require.True(t, diff.Empty(), "%s: %d expected, %d produced\n%s", what, len(want), len(got), diff)
}

// TestDurableGatewayRestartKeepsWindows stops a durable gateway in the
// middle of open windows, twice, and starts it again from its data
// directory: the outputs equal one uninterrupted run, row by row, with
// unique ids, and a clean stop leaves nothing to replay.
func TestDurableGatewayRestartKeepsWindows(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	const total = 3000
	clock := &testClock{}
	cfg := Config{Partitions: 4, Tick: time.Hour, CheckpointInterval: 50 * time.Millisecond, SyncInterval: time.Microsecond, Now: clock.now}
	for _, cut := range [][2]int{{0, 1130}, {1130, 2207}, {2207, total}} {
		d := openDurable(t, dir, job, cfg)
		require.Zero(t, d.g.DurableStats().ReplayedEntries, "a clean stop leaves nothing to replay")
		ingestReadings(t, d.g, clock, cut[0], cut[1])
		if cut[1] == total {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			require.NoError(t, d.g.FlushWindows(ctx))
			cancel()
		}
		d.waitDelivered(t)
		d.close(t)
	}
	want := expectedRows(t, job, total)
	require.NotEmpty(t, want["agg"])
	require.NotEmpty(t, want["hot"])
	requireSameRows(t, want["agg"], readOutput(t, filepath.Join(dir, "agg.jsonl")), "agg")
	requireSameRows(t, want["hot"], readOutput(t, filepath.Join(dir, "hot.jsonl")), "hot")
}

// poisonSink panics once while encoding the hot row of reading 1013 (fault
// injection in the partition's output path).
type poisonSink struct {
	*Outputs
	panicked atomic.Bool
}

func (p *poisonSink) Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool) {
	if seq, ok := rec.Get("seq"); ok && seq.Int() == 1013/20 && strings.EqualFold(output, "hot") {
		if dev, _ := rec.Get("deviceId"); dev.Str() == "press-13" && p.panicked.CompareAndSwap(false, true) {
			panic("injected failure while emitting")
		}
	}
	return p.Outputs.Encode(job, output, ts, rec, id)
}

// openStoreAndOutputs opens a 2-partition store in dir and durable
// outputs on it; both close when the test ends.
func openStoreAndOutputs(t *testing.T, dir string) (*state.Store, *Outputs, *slog.Logger) {
	t.Helper()
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: 2})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	t.Cleanup(func() { outs.Close() })
	return st, outs, logger
}

// TestDurableRefusesInputBeforeRecover: a restarted gateway's broker
// takes publishes before its jobs are deployed again. Until Recover, input
// is refused (the publisher resends), not acknowledged as unrouted and
// dropped.
func TestDurableRefusesInputBeforeRecover(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	g := New(Config{Partitions: 2, Store: st, Logger: logger}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	_, payload := reading(0)
	topic := "devices/dev-00/messages/events"
	_, _, err = g.IngestTopicAsync(topic, payload)
	require.ErrorIs(t, err, ErrNotReady, "no job yet: refused, not unrouted")
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	_, _, err = g.IngestTopicAsync(topic, payload)
	require.ErrorIs(t, err, ErrNotReady, "deployed, not recovered")
	require.NoError(t, g.Recover(ctx))
	n, c, err := g.IngestTopicAsync(topic, payload)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, c.Wait())
	_, _, err = g.IngestTopicAsync("elsewhere/dev-00", payload)
	require.NoError(t, err, "once ready, a topic no job reads is unrouted")
}

// TestDurableJobRecoversAfterASinkPanic: a job whose row encoding panics
// (in its actor) comes back from its checkpoint and log, alone; unlike
// the in-memory gateway, nothing is lost and nothing is counted twice.
func TestDurableJobRecoversAfterASinkPanic(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	sink := &poisonSink{Outputs: outs}
	requireExactAfterOneRestart(t, dir, job, st, outs, logger, sink, 0, 1)
	require.True(t, sink.panicked.Load(), "the fault was not injected")
}

// requireExactAfterOneRestart runs 2000 readings through a durable
// 2-partition gateway with sink (outs, or outs with a fault injected),
// and requires the restarts of partitions and of job actors given and
// the outputs of a run without them: nothing lost, nothing twice.
func requireExactAfterOneRestart(t *testing.T, dir string, job *pb.Job, st *state.Store, outs *Outputs, logger *slog.Logger, sink Sink, partitionRestarts, jobRestarts uint64) {
	t.Helper()
	clock := &testClock{}
	g := New(Config{Partitions: 2, Tick: time.Hour, CheckpointInterval: 20 * time.Millisecond, SyncInterval: time.Microsecond, Store: st, Logger: logger, Now: clock.now}, sink, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	ingestReadings(t, g, clock, 0, 2000)
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))
	require.Equal(t, partitionRestarts, g.Restarts())
	require.Equal(t, jobRestarts, g.JobRestarts())
	d := &durableGateway{g: g, outs: outs, store: st}
	d.waitDelivered(t)
	want := expectedRows(t, job, 2000)
	requireSameRows(t, want["agg"], readOutput(t, filepath.Join(dir, "agg.jsonl")), "agg")
	requireSameRows(t, want["hot"], readOutput(t, filepath.Join(dir, "hot.jsonl")), "hot")
	require.NoError(t, g.Close(ctx))
}

// TestDurableSequenceFieldDropsResends: a QoS 1 resend of a logged message
// (same device, same sequence number) is dropped and counted.
func TestDurableSequenceFieldDropsResends(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	clock := &testClock{}
	d := openDurable(t, dir, job, Config{Partitions: 4, Tick: time.Hour, SequenceField: "seq", SyncInterval: time.Microsecond, Now: clock.now})
	ingestReadings(t, d.g, clock, 0, 600)
	ingestReadings(t, d.g, clock, 400, 600) // resent
	ingestReadings(t, d.g, clock, 600, 900)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.g.Drain(ctx))
	require.NoError(t, d.g.FlushWindows(ctx))
	require.Equal(t, uint64(200), d.g.DurableStats().Duplicates)
	d.waitDelivered(t)
	d.close(t)
	want := expectedRows(t, job, 900)
	requireSameRows(t, want["agg"], readOutput(t, filepath.Join(dir, "agg.jsonl")), "agg")
}

// alwaysPoisonSink panics every time it encodes the hot row of one
// reading: a deterministic failure.
type alwaysPoisonSink struct {
	*Outputs
	panics atomic.Int64
}

func (p *alwaysPoisonSink) Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool) {
	if seq, ok := rec.Get("seq"); ok && seq.Int() == 1013/20 && strings.EqualFold(output, "hot") {
		if dev, _ := rec.Get("deviceId"); dev.Str() == "press-13" {
			p.panics.Add(1)
			panic("injected failure on every try")
		}
	}
	return p.Outputs.Encode(job, output, ts, rec, id)
}

// TestDurablePoisonEntryDeadLettered: a log entry that crashes its
// partition every time is tried poisonLimit times, then skipped and kept
// as a poison dead letter with the panic and the payload; the partition
// and the other readings carry on.
func TestDurablePoisonEntryDeadLettered(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	sink := &alwaysPoisonSink{Outputs: outs}
	dead := NewDeadLetters(nil, "", logger)
	clock := &testClock{}
	g := New(Config{Partitions: 2, Tick: time.Hour, CheckpointInterval: 20 * time.Millisecond, SyncInterval: time.Microsecond, Store: st, Logger: logger, Now: clock.now}, sink, dead)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	ingestReadings(t, g, clock, 0, 2000)
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))
	require.Equal(t, int64(poisonLimit), sink.panics.Load())
	require.Equal(t, uint64(poisonLimit), g.JobRestarts(), "the job restarted alone each time")
	require.Equal(t, uint64(0), g.Restarts())
	require.Equal(t, uint64(1), g.DurableStats().SkippedPoison)
	kept, err := dead.List(0, 10)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, DeadLetterPoison, kept[0].Kind)
	require.Contains(t, kept[0].Reason, "injected failure on every try")
	_, payload := reading(1013)
	require.Equal(t, payload, kept[0].Payload)
	require.Equal(t, "press-13", kept[0].Source)
	require.Equal(t, "temps", kept[0].Job, "poison for the job that panicked on it")
	d := &durableGateway{g: g, outs: outs, store: st}
	d.waitDelivered(t)
	want := expectedRows(t, job, 2000)
	require.Len(t, readOutput(t, filepath.Join(dir, "hot.jsonl")), len(want["hot"])-1, "every hot reading but the poisoned one")
	require.NoError(t, g.Close(ctx))
}

// TestJobCatalogVersions: deploys and removals through a standalone
// durable gateway once it runs go to the job catalog, each with the next
// version of its name and the gateway's name; a removal stays as one
// (CatalogJobs leaves it out). A job deployed before Recover (the
// configuration file's) is not recorded: the file is read at each start.
func TestJobCatalogVersions(t *testing.T) {
	dir := t.TempDir()
	fileJob, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	d := openDurable(t, dir, fileJob, Config{Partitions: 2, Tick: time.Hour, Name: "gw-a"})
	defer d.close(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, ok, err := d.store.JobUpdate("temps")
	require.NoError(t, err)
	require.False(t, ok, "the file's job is not in the catalog")
	api, err := config.ParseJob("job.yaml", []byte("name: api\nquery: SELECT v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, d.outs.Configure(api))
	for want := int64(1); want <= 2; want++ {
		require.NoError(t, d.g.Deploy(ctx, api))
		u, ok, err := d.store.JobUpdate("api")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, u.Version)
		require.Equal(t, "gw-a", u.Origin)
		require.Equal(t, "api", u.Job.GetName())
	}
	require.NoError(t, d.g.Remove(ctx, "api"))
	u, _, err := d.store.JobUpdate("api")
	require.NoError(t, err)
	require.Equal(t, "api", u.Removed)
	require.EqualValues(t, 3, u.Version)
	jobs, err := d.store.CatalogJobs()
	require.NoError(t, err)
	require.Empty(t, jobs)
}
