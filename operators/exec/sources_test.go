package exec_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
)

const mergedQuery = `SELECT COUNT(*) AS n, System.Timestamp() AS w FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`

// sourceEvent is one event of a merged input: its source, its event time
// and its arrival time, both in seconds after base.
type sourceEvent struct {
	src        int
	t, arrival float64
}

// feedSources ingests the events through IngestFrom (or Ingest, when
// merged is false) with their arrival times.
func feedSources(t *testing.T, h *harness, merged bool, evs []sourceEvent) {
	t.Helper()
	for _, e := range evs {
		payload := []byte(ev(e.t, ""))
		if merged {
			require.NoError(t, h.ex.IngestFrom("i", e.src, payload, at(e.arrival)))
		} else {
			require.NoError(t, h.ex.Ingest("i", payload, at(e.arrival)))
		}
	}
}

// twoSourcesOneAhead is both sources' readings at 1 s, then source 0's
// for 2-25 s, then source 1's for the same seconds: source 1 lags 23 s
// behind source 0, as a partition replaying its log does behind one that
// is live. (A source holds the watermark from its first event on: the
// executor cannot wait for sources it has not heard of.)
func twoSourcesOneAhead() []sourceEvent {
	evs := []sourceEvent{{src: 0, t: 1, arrival: 30}, {src: 1, t: 1, arrival: 30}}
	for src := 0; src < 2; src++ {
		for s := 2; s <= 25; s++ {
			evs = append(evs, sourceEvent{src: src, t: float64(s), arrival: 30})
		}
	}
	return evs
}

// orderedRun is the output of the same events in event-time order on one
// executor: what the merged input must produce.
func orderedRun(t *testing.T, evs []sourceEvent) []string {
	h := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: time.Hour})
	for s := 1; s <= 25; s++ {
		for _, e := range evs {
			if e.t == float64(s) {
				h.feed(ev(e.t, ""))
			}
		}
	}
	return h.flush()
}

// TestExecMergedSourcesLaggingSourceIsNotLate: a source behind another
// has none of its events adjusted; the windows equal an ordered run.
// Without sources the same order moves source 1's early readings into
// later windows, which is what the sources are for.
func TestExecMergedSourcesLaggingSourceIsNotLate(t *testing.T) {
	evs := twoSourcesOneAhead()
	want := orderedRun(t, evs)
	require.Equal(t, []string{
		`10 {"n":20,"w":"2026-01-01T00:00:10.0000000Z"}`,
		`20 {"n":20,"w":"2026-01-01T00:00:20.0000000Z"}`,
		`30 {"n":10,"w":"2026-01-01T00:00:30.0000000Z"}`,
	}, want)

	merged := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: time.Hour})
	feedSources(t, merged, true, evs)
	require.Equal(t, want, merged.flush())
	require.Zero(t, merged.ex.Counters().OutOfOrderAdjusted)

	single := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: time.Hour})
	feedSources(t, single, false, evs)
	require.NotEqual(t, want, single.flush())
	require.Positive(t, single.ex.Counters().OutOfOrderAdjusted)
}

// TestExecMergedSourcesIdleSourceHoldsNothing: a source whose latest
// event arrived more than the late-arrival tolerance before the newest
// one no longer holds the watermark, so windows close without it; when
// it sends again it holds the watermark again.
func TestExecMergedSourcesIdleSourceHoldsNothing(t *testing.T) {
	h := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: 5 * time.Second})
	feedSources(t, h, true, []sourceEvent{{src: 1, t: 1, arrival: 1}})
	for s := 1; s <= 5; s++ {
		feedSources(t, h, true, []sourceEvent{{src: 0, t: float64(s), arrival: float64(s)}})
	}
	require.Empty(t, h.rows, "source 1 is not idle yet")
	feedSources(t, h, true, []sourceEvent{{src: 0, t: 12, arrival: 12}})
	require.Equal(t, []string{`10 {"n":6,"w":"2026-01-01T00:00:10.0000000Z"}`}, h.rows,
		"source 1 has been idle for 11 s: the window closes at source 0's time")

	// Source 1 is back: the watermark waits for it again (window 20 stays
	// open while source 1 is at 13 s).
	feedSources(t, h, true, []sourceEvent{{src: 1, t: 13, arrival: 13}, {src: 0, t: 25, arrival: 14}})
	require.Len(t, h.rows, 1)
	feedSources(t, h, true, []sourceEvent{{src: 1, t: 21, arrival: 15}})
	require.Equal(t, `20 {"n":2,"w":"2026-01-01T00:00:20.0000000Z"}`, h.rows[1])
}

// TestExecMergedSourcesSurviveSnapshot: the sources' clocks are part of
// the snapshot, so a restored executor goes on holding the watermark for
// the lagging source.
func TestExecMergedSourcesSurviveSnapshot(t *testing.T) {
	evs := twoSourcesOneAhead()
	want := orderedRun(t, evs)
	for cut := 1; cut < len(evs); cut++ {
		first := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: time.Hour})
		feedSources(t, first, true, evs[:cut])
		snap, err := first.ex.Snapshot()
		require.NoError(t, err)
		second := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: time.Hour})
		require.NoError(t, second.ex.Restore(snap))
		feedSources(t, second, true, evs[cut:])
		require.Equal(t, want, append(first.rows, second.flush()...), "snapshot after %d events", cut)
	}
}

// TestExecMergedSourcesWatermarkModel compares the watermark of a merged
// input with a model that scans every source on every event, over random
// streams of 8 sources with lags, pauses and late events, with a snapshot
// and restore now and then.
func TestExecMergedSourcesWatermarkModel(t *testing.T) {
	const late, ooo = 5, 2 // seconds
	rnd := rand.New(rand.NewPCG(7, 11))
	for run := 0; run < 200; run++ {
		h := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: late * time.Second, OutOfOrderTolerance: ooo * time.Second})
		type clock struct {
			maxSeen, arrival float64
			seen             bool
		}
		var srcs [8]clock
		model := math.Inf(-1)
		now := 0.0
		for i := 0; i < 300; i++ {
			now += rnd.Float64()
			src := rnd.IntN(8)
			if src >= 4 && rnd.IntN(4) > 0 {
				src = rnd.IntN(4) // sources 4-7 are quieter and go idle
			}
			et := now - rnd.Float64()*4 // within the late-arrival tolerance
			require.NoError(t, h.ex.IngestFrom("i", src, []byte(ev(et, "")), at(now)))
			c := &srcs[src]
			if !c.seen || et > c.maxSeen {
				c.maxSeen = et
			}
			c.arrival, c.seen = now, true
			low := math.Inf(1)
			for _, c := range srcs {
				if c.seen && c.arrival >= now-late {
					low = math.Min(low, c.maxSeen)
				}
			}
			model = math.Max(model, low-ooo)
			wm, ok := h.ex.Watermark()
			require.True(t, ok)
			require.InDelta(t, model, float64(wm-base)/float64(value.TicksPerSecond), 1e-6, "run %d event %d", run, i)
			if rnd.IntN(50) == 0 {
				snap, err := h.ex.Snapshot()
				require.NoError(t, err)
				restored := newHarness(t, mergedQuery, exec.Options{LateArrivalTolerance: late * time.Second, OutOfOrderTolerance: ooo * time.Second})
				require.NoError(t, restored.ex.Restore(snap))
				h = restored
			}
		}
	}
}

// TestExecMergedSourcesRefusesHugeSourceNumbers: a source number is a
// slice index; one out of range is an error, not an allocation.
func TestExecMergedSourcesRefusesHugeSourceNumbers(t *testing.T) {
	h := newHarness(t, mergedQuery, exec.Options{})
	err := h.ex.IngestFrom("i", exec.MaxSources, []byte(ev(1, "")), at(1))
	require.ErrorIs(t, err, exec.ErrBadSource)
	require.NoError(t, h.ex.IngestFrom("i", exec.MaxSources-1, []byte(ev(1, "")), at(1)))
}
