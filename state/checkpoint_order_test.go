package state

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestCheckpointNeverGoesBack (issue 11 C): a replica holds a partition's
// safe checkpoint; a checkpoint at an earlier log position (the empty state
// of a gateway that does not serve the partition) is refused and leaves the
// replicated copy as it was.
func TestCheckpointNeverGoesBack(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	replicated := &pb.Checkpoint{LogPosition: 500, OutputSeq: 40, Devices: []*pb.DeviceState{{Id: "press-01", Messages: 500}}}
	require.NoError(t, s.ApplySafeCheckpoint(2, &pb.SafeCheckpoint{Checkpoint: replicated, Through: 500, Epoch: 3}))

	err = s.SaveCheckpoint(2, &pb.Checkpoint{})
	require.ErrorIs(t, err, ErrStaleCheckpoint)
	cp, err := s.LoadCheckpoint(2)
	require.NoError(t, err)
	require.Equal(t, uint64(500), cp.LogPosition)
	require.Len(t, cp.Devices, 1)

	require.NoError(t, s.SaveCheckpoint(2, &pb.Checkpoint{LogPosition: 500, OutputSeq: 40}), "the same position is no step back")
	require.NoError(t, s.SaveCheckpoint(2, &pb.Checkpoint{LogPosition: 501, OutputSeq: 41}))
	require.NoError(t, s.ResetPartition(2))
	require.NoError(t, s.SaveCheckpoint(2, &pb.Checkpoint{LogPosition: 1}), "a reset partition starts over")
}
