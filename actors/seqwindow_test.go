package actors

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSeqWindowAcceptsLateOnce: against a model that remembers every
// number, the window never calls a number it has not seen a duplicate
// (issue 11 B: late resends were dropped and acknowledged), calls every
// repeat within seqWindowSize of the highest a duplicate, and takes older
// numbers as unverified.
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
			default: // late or a repeat, sometimes below the first number
				seq = next - 1 - uint64(rng.IntN(1500))
				if seq > next {
					seq = 0
				}
			}
			v, h, nw := seqAccept(seq, last, seen, w)
			var want seqVerdict
			switch {
			case len(model) > 0 && seq < high && high-seq >= seqWindowSize:
				want = seqUnverified
			case model[seq]:
				want = seqDuplicate
			default:
				want = seqNew
			}
			require.Equal(t, want, v, "round %d step %d: seq %d, highest %d", round, i, seq, high)
			if v != seqDuplicate {
				model[seq] = true
				high = max(high, seq)
			}
			last, seen, w = h, true, nw
			require.Equal(t, high, last)
		}
	}
}

// TestSeqWindowGlobalCounter: a publisher whose counter is shared by its
// devices gives each device numbers far apart; late numbers are taken, not
// dropped, however far apart they are.
func TestSeqWindowGlobalCounter(t *testing.T) {
	var (
		last uint64
		seen bool
		w    *seqWindow
	)
	for seq := uint64(0); seq < 100_000; seq += 1000 { // every 1000th number
		var v seqVerdict
		v, last, w = seqAccept(seq, last, seen, w)
		seen = true
		require.Equal(t, seqNew, v)
	}
	v, _, _ := seqAccept(500, last, seen, w)
	require.Equal(t, seqUnverified, v, "an old number the window cannot check is taken")
	v, _, _ = seqAccept(last, last, seen, w)
	require.Equal(t, seqDuplicate, v, "the latest number again is a resend")
}

func TestSeqWindowEncoding(t *testing.T) {
	_, _, w := seqAccept(10, 5, true, nil)
	require.NotNil(t, w, "a gap needs a window")
	got := seqWindowOf(w.bytes())
	require.Equal(t, w, got)
	require.Nil(t, seqWindowOf([]byte{1, 2, 3}), "a damaged window counts as none")
	for s := uint64(6); s < 10; s++ {
		var v seqVerdict
		v, _, w = seqAccept(s, 10, true, w)
		require.Equal(t, seqNew, v, "late %d", s)
	}
	require.Nil(t, w, "every gap filled: no window kept")
}
