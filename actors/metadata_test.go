package actors

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
)

func TestGatewayEventMetadataFromTopicAndProperties(t *testing.T) {
	m := eventMetadata("devices/d1/messages/events/$.mid=m%2F1&$.cid=c1&$.ct=application%2Fjson&line=4", []exec.UserProperty{{Key: "shift", Value: "night"}})
	require.Equal(t, "m/1", m.MessageId)
	require.Equal(t, "c1", m.CorrelationId)
	require.Len(t, m.UserProperties, 2)
	require.Equal(t, "line", m.UserProperties[0].Key)
	require.Equal(t, "4", m.UserProperties[0].Value)
	require.Equal(t, "shift", m.UserProperties[1].Key)
	require.Empty(t, eventMetadata("devices/d1/messages/events/", nil).UserProperties)
}

// TestGatewayMetadataAndUDF runs a job that reads event metadata and calls
// a JavaScript function through a durable gateway: the device, message id,
// user properties and arrival time reach the query, and a function that
// throws dead-letters its event with kind udf_error.
func TestGatewayMetadataAndUDF(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: meta
query: |
  SELECT IoTHub.ConnectionDeviceId AS device, GetMetadataPropertyValue(e, '[User].[line]') AS line,
    GetMetadataPropertyValue(e, 'IoTHub.MessageId') AS mid, EventEnqueuedUtcTime AS enq,
    udf.twice(temperature) AS t2
  INTO out FROM e
inputs: [{name: e, topic: "devices/+/messages/events/#", iothub_properties: true}]
outputs: [{name: out, file: {path: %q}}]
functions:
  - name: twice
    code: |
      function main(x) { if (x < 0) throw new Error("negative"); return x * 2; }
`, out)))
	require.NoError(t, err)
	clock := &testClock{}
	at := value.FromTime(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC))
	clock.t.Store(at)
	cfg := Config{Partitions: 2, Tick: time.Hour, CheckpointInterval: 50 * time.Millisecond, SyncInterval: time.Microsecond, Now: clock.now}
	d := openDurable(t, dir, job, cfg)
	n, c, err := d.g.IngestTopicProps("devices/oven-1/messages/events/$.mid=42&line=7", []byte(`{"temperature": 21}`), nil)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, c.Wait())
	_, c, err = d.g.IngestTopicProps("devices/oven-2/messages/events/", []byte(`{"temperature": -1}`), []exec.UserProperty{{Key: "line", Value: "8"}})
	require.NoError(t, err)
	require.NoError(t, c.Wait())
	d.waitDelivered(t)
	d.close(t)
	rows := readOutput(t, out)
	require.Len(t, rows, 1)
	rec := rows[0]
	for name, want := range map[string]string{"device": "oven-1", "line": "7", "mid": "42"} {
		v, _ := rec.Get(name)
		require.Equal(t, want, v.Str(), name)
	}
	v, _ := rec.Get("t2")
	require.Equal(t, int64(42), v.Int())
	v, _ = rec.Get("enq")
	require.Equal(t, "2024-03-01T10:00:00.0000000Z", v.Str())
}
