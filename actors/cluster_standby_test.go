package actors

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// idleLink is a cluster link of a gateway that serves nothing yet: the
// gateway is a replica only.
type idleLink struct{}

func (idleLink) Forward(_ int, _ []*pb.LogEntry, done func(error)) { done(ErrClosed) }
func (idleLink) Replicate([]state.LogGroup) <-chan error {
	ch := make(chan error, 1)
	ch <- nil
	return ch
}
func (idleLink) SafeCheckpoint(int, *pb.SafeCheckpoint) {}
func (idleLink) Fenced() bool                           { return false }
func (idleLink) Forwarding(int) bool                    { return false }

// TestClusteredGatewayKeepsReplicaCheckpoint (issue 11 C): a clustered
// gateway's partitions were started as a standalone gateway's, so each
// periodic checkpoint wrote their empty state over the copy the gateway
// held as a replica, and a take-over restored nothing. Partitions it does
// not serve write no checkpoint, and Serve restores the replicated state.
func TestClusteredGatewayKeepsReplicaCheckpoint(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	replicated := &pb.Checkpoint{LogPosition: 500, OutputSeq: 40, Devices: []*pb.DeviceState{{Id: "dev-01", Messages: 500, LastSeen: 1}}}
	require.NoError(t, st.ApplySafeCheckpoint(1, &pb.SafeCheckpoint{Checkpoint: replicated, Through: 500, Epoch: 2}))

	g := New(Config{Partitions: 2, Store: st, Logger: logger, Clustered: true}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	// As in a real gateway, which joins the cluster well after New: the
	// partitions have started as a standalone gateway's.
	require.Eventually(t, func() bool {
		for i := range g.started {
			if !g.started[i].Load() {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, g.SetCluster(idleLink{}))
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	require.NoError(t, g.Checkpoint(ctx), "a partition not served has nothing to checkpoint")

	cp, err := st.LoadCheckpoint(1)
	require.NoError(t, err)
	require.Equal(t, uint64(500), cp.LogPosition, "the replicated checkpoint was overwritten")
	require.Len(t, cp.Devices, 1)

	require.NoError(t, g.Serve(ctx, 1, 3))
	devs, err := g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 1, "the take-over restored the replicated devices")
	require.Equal(t, "dev-01", devs[0].ID)
	require.Equal(t, uint64(500), devs[0].Messages)
	require.Zero(t, g.DurableStats().StaleCheckpoints)
}
