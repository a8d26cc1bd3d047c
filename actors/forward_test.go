package actors

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestForwardNumbersJobsInNameOrder: a partition numbers the events one
// log entry forwards to partition 0 (srcIdx), one per job that runs there
// only, and partition 0 applies them once by (source, seq, index) (D3). A
// replay of the entry (after a restart or a take-over) must number them as
// the first run did: in map order, partition 0, having applied the first
// run's index 0 (job A) only, dropped the replay's index 0 (job B) as
// applied and applied its index 1 (job A) again. Each fresh partition here
// lists the jobs anew, as a replay does.
func TestForwardNumbersJobsInNameOrder(t *testing.T) {
	names := []string{"totals", "rises", "alerts", "zeta", "mid", "b", "a"}
	inputs := []*pb.Input{{Name: "readings"}}
	for run := 0; run < 20; run++ {
		p := &partition{g: &Gateway{log: &logWriter{}}, id: 3, jobs: map[string]*deployedJob{}}
		for _, name := range names {
			p.jobs[name] = &deployedJob{job: &pb.Job{Name: name}, plan: &pb.Plan{Inputs: inputs}}
		}
		p.jobs["per-device"] = &deployedJob{job: &pb.Job{Name: "per-device"}, plan: &pb.Plan{Inputs: inputs}, partitioned: true}
		p.updateForwardJobs()
		p.setApplied(7)
		p.forward(event{input: "readings", device: "press-01", payload: []byte(`{}`)})

		require.Len(t, p.forwardBuf, len(names), "one event per job on partition 0 only")
		for i, e := range p.forwardBuf {
			require.Equal(t, uint64(7), e.srcSeq)
			require.Equal(t, uint32(i), e.srcIdx)
			if i > 0 {
				require.Less(t, p.forwardBuf[i-1].job, e.job, "run %d: index %d is job %q, after %q", run, i, e.job, p.forwardBuf[i-1].job)
			}
		}
	}
}

// heldForwardLink is the cluster link of a gateway that serves partition 1
// and not partition 0: what partition 1 forwards to partition 0 is kept
// here and never logged there, as when partition 0's gateway is slow or
// gone.
type heldForwardLink struct {
	idleLink
	mu      sync.Mutex
	entries []*pb.LogEntry
}

func (l *heldForwardLink) Forward(p int, entries []*pb.LogEntry, _ func(error)) {
	if p != 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entries...)
}

// positionsOf lists the source positions of the events forwarded for the
// reading with sequence number seq.
func (l *heldForwardLink) positionsOf(seq int) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, e := range l.entries {
		if !e.Mark && strings.Contains(string(e.Payload), fmt.Sprintf(`"seq":%d,`, seq)) {
			out = append(out, e.SourceSeq)
		}
	}
	return out
}

// TestRecoveryForwardsNoDroppedResend (seed 849, with the take-over fix):
// a resent reading (sequence_field) is logged twice by its partition and
// dropped as a duplicate the second time, so it is forwarded to partition
// 0 once. A take-over's recovery forwards again the entries between what
// partition 0 had logged and the checkpoint, without applying them; it
// forwarded the dropped resend too, at its own position, and partition 0,
// which applies a forwarded event once by position, counted the reading
// twice (a global window of 1,801 readings, join rows under a new _id).
// The checkpoint lists the entries the first run did not forward.
func TestRecoveryForwardsNoDroppedResend(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: totals
query: SELECT COUNT(*) AS n, System.Timestamp() AS windowEnd INTO totals FROM readings TIMESTAMP BY eventTime GROUP BY TumblingWindow(second, 30)
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs:
  - {name: totals, file: {path: %q}}
`, filepath.Join(dir, "totals.jsonl"))))
	require.NoError(t, err)
	link := &heldForwardLink{}
	g, ctx := clusteredGateway(t, dir, Config{SequenceField: "seq"}, link, job)
	require.NoError(t, g.Serve(ctx, 1, 1))

	// Readings of a device of partition 1, the second one sent twice (its
	// acknowledgement was lost).
	var dev string
	for n := 0; dev == ""; n++ {
		if d, _ := reading(n); PartitionOf(d, 2) == 1 {
			dev = d
		}
	}
	publish := func(seq int) {
		payload := []byte(fmt.Sprintf(`{"deviceId":%q,"seq":%d,"temperature":70,"eventTime":"2026-11-23T08:00:0%dZ"}`, dev, seq, seq))
		_, c, err := g.IngestTopicAsync("devices/"+dev+"/messages/events", payload)
		require.NoError(t, err)
		require.NoError(t, c.Wait())
	}
	publish(1)
	publish(2)
	publish(2)
	publish(3)
	require.NoError(t, g.Checkpoint(ctx))
	require.Eventually(t, func() bool { return len(link.positionsOf(3)) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Len(t, link.positionsOf(2), 1, "the resend is dropped, not forwarded")

	// Partition 1 taken over from this store (partition 0 logged none of
	// it): each reading is forwarded again at the same position, once.
	_, _, err = g.Release(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, g.Serve(ctx, 1, 2))
	require.Eventually(t, func() bool { return len(link.positionsOf(3)) == 2 }, 5*time.Second, 10*time.Millisecond)
	for seq := 1; seq <= 3; seq++ {
		pos := link.positionsOf(seq)
		require.Len(t, pos, 2, "reading %d: forwarded by the first run and by the recovery", seq)
		require.Equal(t, pos[0], pos[1], "reading %d forwarded at two positions: partition 0 would count it twice", seq)
	}
}

// clusteredGateway starts a clustered durable gateway of two partitions
// with its store in dir, cfg's other settings, link and job, serving
// nothing yet; it is closed when the test ends.
func clusteredGateway(t *testing.T, dir string, cfg Config, link ClusterLink, job *pb.Job) (*Gateway, context.Context) {
	st, outs, logger := openStoreAndOutputs(t, dir)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Partitions, cfg.Store, cfg.Logger, cfg.Clustered = 2, st, logger, true
	g := New(cfg, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		require.NoError(t, g.Close(ctx))
		cancel()
	})
	require.NoError(t, g.SetCluster(link))
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	return g, ctx
}

// answerLink is a cluster link whose Forward answers at once with err.
type answerLink struct {
	idleLink
	err error
}

func (l answerLink) Forward(_ int, _ []*pb.LogEntry, done func(error)) { done(l.err) }

// TestParkedForwardIsNotLogged: a forward to partition 0 that the link
// parked (cut off from the majority) is not logged by partition 0 yet, so
// it must not let the source truncate its log past it (the lead of the
// churn nemesis' partition-0 misses: the source's checkpoint, replicated,
// truncated its replicas' logs too, and a gateway that took the source
// over could not forward the events again). A publisher's event that was
// parked is taken: its commit succeeds.
func TestParkedForwardIsNotLogged(t *testing.T) {
	for _, c := range []struct {
		err    error
		logged uint64
	}{{nil, 7}, {ErrParked, 0}, {ErrClosed, 0}} {
		g := &Gateway{fwdLogged: make([]atomic.Uint64, 4), cl: &clusterState{link: answerLink{err: c.err}}}
		g.forwardToZero(3, []event{{forwarded: true, src: 3, srcSeq: 7, job: "totals"}})
		require.Equal(t, c.logged, g.fwdLogged[3].Load(), "forward answered %v", c.err)
	}
	g := &Gateway{cl: &clusterState{link: answerLink{err: ErrParked}}}
	gen := g.forwardEvent(2, event{device: "press-1", payload: []byte(`{}`)})
	<-gen.done
	require.NoError(t, gen.err, "a parked event is taken")
}
