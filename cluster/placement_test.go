package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func names(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("gw-%d", i))
	}
	return out
}

// TestPlaceIsDeterministicBalancedAndDistinct: C1, C2, and no member owns
// far more than its share.
func TestPlaceIsDeterministicBalancedAndDistinct(t *testing.T) {
	a, err := Place(64, 2, []string{"gw-2", "gw-0", "gw-1"})
	require.NoError(t, err)
	b, err := Place(64, 2, []string{"gw-1", "gw-2", "gw-0", "gw-1"})
	require.NoError(t, err)
	require.Equal(t, a, b, "the same view gives the same table, whatever the order")
	owned := map[string]int{}
	for p, as := range a.Partitions {
		require.Len(t, as.Replicas, 1, "partition %d", p)
		require.NotEqual(t, as.Owner, as.Replicas[0], "partition %d: owner and replica must differ", p)
		owned[as.Owner]++
	}
	for m, n := range owned {
		require.GreaterOrEqual(t, n, 12, "%s owns %d of 64", m, n)
		require.LessOrEqual(t, n, 32, "%s owns %d of 64", m, n)
	}
	small, err := Place(8, 3, []string{"gw-0", "gw-1"})
	require.NoError(t, err)
	for _, as := range small.Partitions {
		require.ElementsMatch(t, []string{"gw-0", "gw-1"}, append([]string{as.Owner}, as.Replicas...), "fewer members than replicas: all hold it")
	}
	_, err = Place(0, 2, names(3))
	require.Error(t, err)
	_, err = Place(8, 0, names(3))
	require.Error(t, err)
}

// TestNextMovesLittleAndBumpsEpochsOfWhatMoved: C3 for a join and a
// failure.
func TestNextMovesLittleAndBumpsEpochsOfWhatMoved(t *testing.T) {
	const parts = 256
	three, err := Next(Table{}, parts, 2, names(3))
	require.NoError(t, err)
	for _, a := range three.Partitions {
		require.Equal(t, uint64(1), a.Epoch)
	}
	four, err := Next(three, parts, 2, names(4))
	require.NoError(t, err)
	moved := 0
	for p := range four.Partitions {
		o, n := three.Partitions[p], four.Partitions[p]
		if o.Owner != n.Owner {
			moved++
			require.Equal(t, "gw-3", n.Owner, "partition %d moved to an old member", p)
		}
		changed := o.Owner != n.Owner || !slices.Equal(o.Replicas, n.Replicas)
		if changed {
			require.Equal(t, o.Epoch+1, n.Epoch, "partition %d changed", p)
			require.Contains(t, append([]string{n.Owner}, n.Replicas...), "gw-3", "partition %d changed without the new member", p)
		} else {
			require.Equal(t, o.Epoch, n.Epoch, "partition %d did not change", p)
		}
	}
	require.InDelta(t, parts/4, moved, parts/8, "a fourth member takes about a quarter of the owners")
	require.Len(t, four.Owned("gw-3"), moved)

	// gw-1 fails: its partitions go to their replicas, nothing else moves.
	after, err := Next(four, parts, 2, []string{"gw-0", "gw-2", "gw-3"})
	require.NoError(t, err)
	for p := range after.Partitions {
		o, n := four.Partitions[p], after.Partitions[p]
		if o.Owner == "gw-1" {
			require.Equal(t, o.Replicas[0], n.Owner, "partition %d: the replica takes over", p)
		} else {
			require.Equal(t, o.Owner, n.Owner, "partition %d moved though its owner lives", p)
		}
		if o.Owner == "gw-1" || slices.Contains(o.Replicas, "gw-1") {
			require.Equal(t, o.Epoch+1, n.Epoch)
		} else {
			require.Equal(t, o.Epoch, n.Epoch)
		}
	}
	require.Empty(t, after.Owned("gw-1"))
	require.Empty(t, after.Replicated("gw-1"))
}
