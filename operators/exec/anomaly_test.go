package exec_test

import (
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
)

// series is 600 one-second readings around 50 with unit Gaussian noise
// (fixed seed) clipped at 3 sigma, so that the only anomalies are the ones
// edit puts at the positions it chooses.
func series(edit func(i int, v float64) float64) []string {
	rng := rand.New(rand.NewSource(20261123))
	out := make([]string, 600)
	for i := range out {
		v := edit(i, 50+math.Max(-3, math.Min(3, rng.NormFloat64())))
		out[i] = ev(float64(i), fmt.Sprintf(`"i":%d,"v":%.4f`, i, v))
	}
	return out
}

var anomalyAt = regexp.MustCompile(`"i":(\d+)`)

// anomalies runs a detector query and returns the positions it flags.
func anomalies(t *testing.T, detector string, events []string) []int {
	t.Helper()
	h := newHarness(t, `WITH scored AS (SELECT i, `+detector+` AS a FROM i TIMESTAMP BY t)
		SELECT i, a.Score AS score FROM scored WHERE a.IsAnomaly = 1`, exec.Options{})
	var at []int
	for _, row := range h.feed(events...).flush() {
		n, err := strconv.Atoi(anomalyAt.FindStringSubmatch(row)[1])
		require.NoError(t, err)
		at = append(at, n)
	}
	require.Zero(t, h.ex.Counters().DeadLettered)
	return at
}

func TestAnomalySpikeAndDipFindsSpikesAndDipsOnly(t *testing.T) {
	events := series(func(i int, v float64) float64 {
		switch i {
		case 200:
			return v + 10
		case 400:
			return v - 10
		}
		return v
	})
	const over = ` OVER (LIMIT DURATION(second, 120))`
	require.Equal(t, []int{200, 400}, anomalies(t, `AnomalyDetection_SpikeAndDip(v, 99.99, 120, 'spikesanddips')`+over, events))
	require.Equal(t, []int{200}, anomalies(t, `AnomalyDetection_SpikeAndDip(v, 99.99, 120, 'spikes')`+over, events))
	require.Equal(t, []int{400}, anomalies(t, `AnomalyDetection_SpikeAndDip(v, 99.99, 120, 'dips')`+over, events))
}

func TestAnomalyChangePointFindsLevelShift(t *testing.T) {
	events := series(func(i int, v float64) float64 {
		if i >= 300 {
			return v + 4
		}
		return v
	})
	at := anomalies(t, `AnomalyDetection_ChangePoint(v, 99, 100) OVER (LIMIT DURATION(second, 100))`, events)
	require.NotEmpty(t, at, "the level shift at 300 is not detected")
	require.GreaterOrEqual(t, at[0], 300, "alarm before the change: %v", at)
	require.LessOrEqual(t, at[0], 315, "the change at 300 is detected late: %v", at)

	steady := series(func(_ int, v float64) float64 { return v })
	require.Empty(t, anomalies(t, `AnomalyDetection_ChangePoint(v, 99, 100) OVER (LIMIT DURATION(second, 100))`, steady),
		"alarms on a stationary series")
}

func TestAnomalyPartitionedModels(t *testing.T) {
	// Two devices with different levels: one model each, so neither level
	// looks anomalous to the other.
	var events []string
	for i := 0; i < 200; i++ {
		events = append(events, ev(float64(i), fmt.Sprintf(`"i":%d,"d":"a","v":%d`, i, 10+i%3)),
			ev(float64(i)+0.5, fmt.Sprintf(`"i":%d,"d":"b","v":%d`, 1000+i, 100+i%3)))
	}
	at := anomalies(t, `AnomalyDetection_SpikeAndDip(v, 99, 50, 'spikesanddips') OVER (PARTITION BY d LIMIT DURATION(minute, 5))`, events)
	require.Empty(t, at)
}
