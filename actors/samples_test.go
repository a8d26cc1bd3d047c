package actors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
)

// captureSink keeps every output row.
type captureSink struct {
	mu   sync.Mutex
	rows map[string][]*value.Record
}

func (c *captureSink) Write(_, output string, _ int64, rec *value.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows == nil {
		c.rows = map[string][]*value.Record{}
	}
	c.rows[strings.ToLower(output)] = append(c.rows[strings.ToLower(output)], rec.Clone())
}

// topicFor fills a job input's topic filter for one device.
func topicFor(filter, device string) string {
	filter = strings.TrimSuffix(filter, "/#")
	return strings.ReplaceAll(filter, "+", device)
}

// TestGatewayRunsEverySampleJob runs each deployments/jobs/* scenario that
// ships a job.yaml and sample input through a gateway (topic routing,
// device partitioning, partition actors) and compares every output with
// the scenario's expected rows.
func TestGatewayRunsEverySampleJob(t *testing.T) {
	dirs, err := filepath.Glob("../deployments/jobs/*/job.yaml")
	require.NoError(t, err)
	ran := 0
	for _, jobFile := range dirs {
		dir := filepath.Dir(jobFile)
		c, err := querytest.Load(dir)
		if err != nil {
			continue // no sample input
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			job, err := config.LoadJob(jobFile)
			require.NoError(t, err)
			p, files, opts, err := c.Prepare()
			require.NoError(t, err)
			probe, err := exec.New(p, opts)
			require.NoError(t, err)
			events, err := querytest.Events(probe, files, 0)
			require.NoError(t, err)

			clock := &testClock{}
			sink := &captureSink{}
			g := New(Config{Partitions: 8, Now: clock.now, Tick: time.Hour}, Rows(sink), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, g.Deploy(ctx, job))
			in := job.Inputs[0]
			for _, e := range events {
				dev := deviceID(in.DeviceId, "", e.Payload)
				if strings.HasPrefix(in.DeviceId, "topic:") || in.DeviceId == "" {
					// Topic-based ids: the sample's payloads carry deviceId.
					dev = deviceID("field:deviceId", "", e.Payload)
				}
				if t0, ok := probe.EventTime(e.Input, e.Payload); ok {
					clock.t.Store(t0)
				}
				n, err := g.IngestTopic(topicFor(topicFilter(in), dev), e.Payload)
				require.NoError(t, err)
				require.Equal(t, 1, n)
			}
			require.NoError(t, g.Drain(ctx))
			require.NoError(t, g.FlushWindows(ctx))
			for out, file := range c.Outputs {
				data, err := os.ReadFile(filepath.Join(dir, file))
				require.NoError(t, err)
				want, err := querytest.ReadJSONLines(data)
				require.NoError(t, err)
				sink.mu.Lock()
				got := sink.rows[strings.ToLower(out)]
				sink.mu.Unlock()
				diff := querytest.CompareRows(want, got, c.Compare)
				require.True(t, diff.Empty(), "%s: %d expected, %d produced\n%s", out, len(want), len(got), diff)
			}
			require.NoError(t, g.Close(ctx))
		})
		ran++
	}
	require.GreaterOrEqual(t, ran, 2)
}

func TestPartitionedByDevice(t *testing.T) {
	for _, c := range []struct {
		job  string
		want bool
	}{
		{"../deployments/jobs/temperature-monitoring/job.yaml", true}, // GROUP BY deviceId
		{"../deployments/jobs/predictive-maintenance/job.yaml", true}, // GROUP BY machineId, device_id: field:machineId
		{"../deployments/jobs/video-analytics/job.yaml", true},        // GROUP BY cameraId, device_id: field:cameraId
		{"../deployments/jobs/temperature-filtering/job.yaml", true},  // GROUP BY deviceId
	} {
		j, err := config.LoadJob(c.job)
		require.NoError(t, err)
		p, err := plan.FromSQL(j.Query)
		require.NoError(t, err)
		require.Equal(t, c.want, partitionedByDevice(p, deviceKeyField(j)), c.job)
	}
	global, err := plan.FromSQL("SELECT COUNT(*) AS n FROM i GROUP BY TumblingWindow(second, 10)")
	require.NoError(t, err)
	require.False(t, partitionedByDevice(global, "deviceId"), "a global aggregate must run in one partition")
	lag, err := plan.FromSQL("SELECT LAG(v) OVER (LIMIT DURATION(hour, 1)) AS p FROM i")
	require.NoError(t, err)
	require.False(t, partitionedByDevice(lag, "deviceId"), "LAG without PARTITION BY device spans devices")
}
