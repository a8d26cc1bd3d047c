package benchmarks

import "testing"

// TestStateStaysBoundedByTimeBounds: state size (snapshot bytes) after 10
// minutes of event time is within 10% of its size after 2 minutes, for
// every stateful operator; the bounds in the queries are at most a minute.
func TestStateStaysBoundedByTimeBounds(t *testing.T) {
	for name, q := range stateQueries {
		t.Run(name, func(t *testing.T) {
			sizes := stateSizes(t, q)
			t.Logf("state bytes per minute: %v", sizes)
			lo, hi := float64(sizes[1])*0.9, float64(sizes[1])*1.1
			for m := 2; m < len(sizes); m++ {
				if s := float64(sizes[m]); s < lo || s > hi {
					t.Fatalf("state after minute %d is %d bytes, after minute 2 %d: not flat (%v)", m+1, sizes[m], sizes[1], sizes)
				}
			}
		})
	}
}
