package actors

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSeqWindowAcceptsLateOnce: against a model that remembers every
// number, the window accepts each number once, late ones included, as
// long as they are less than seqWindowSize below the highest; older ones
// and repeats are duplicates.
func TestSeqWindowAcceptsLateOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var (
			last uint64
			seen bool
			w    *seqWindow
		)
		model := map[uint64]bool{}
		var high uint64
		next := uint64(rng.IntN(5000))
		for i := 0; i < 3000; i++ {
			var seq uint64
			switch r := rng.IntN(10); {
			case r < 6: // in order
				seq = next
				next++
			case r < 7: // a gap
				next += uint64(rng.IntN(300))
				seq = next
				next++
			default: // late or a repeat
				seq = next - 1 - uint64(rng.IntN(1500))
				if seq > next {
					seq = 0
				}
			}
			fresh, h, nw := seqAccept(seq, last, seen, w)
			want := !model[seq] && (len(model) == 0 || seq > high || high-seq < seqWindowSize)
			if len(model) > 0 && seq < high && high-seq < seqWindowSize && !model[seq] && seq < firstOf(model) {
				// Below the first number of the device: counted as seen
				// (no window yet), like a repeat.
				want = false
			}
			require.Equal(t, want, fresh, "round %d step %d: seq %d, highest %d", round, i, seq, high)
			if fresh {
				model[seq] = true
				high = max(high, seq)
			}
			last, seen, w = h, true, nw
			require.Equal(t, high, last)
		}
	}
}

func firstOf(m map[uint64]bool) uint64 {
	first := ^uint64(0)
	for s := range m {
		first = min(first, s)
	}
	return first
}

func TestSeqWindowEncoding(t *testing.T) {
	_, _, w := seqAccept(10, 5, true, nil)
	require.NotNil(t, w, "a gap needs a window")
	got := seqWindowOf(w.bytes())
	require.Equal(t, w, got)
	require.Nil(t, seqWindowOf([]byte{1, 2, 3}), "a damaged window counts as none")
	for s := uint64(6); s < 10; s++ {
		var fresh bool
		fresh, _, w = seqAccept(s, 10, true, w)
		require.True(t, fresh, "late %d", s)
	}
	require.Nil(t, w, "every gap filled: no window kept")
}
