package actors

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// captureRelay records what the MQTT outputs relay.
type captureRelay struct {
	mu   sync.Mutex
	rows []string // job/output topic payload
}

func (c *captureRelay) RelayRows(job, output string, rows []*pb.OutboxEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		c.rows = append(c.rows, job+"/"+output+" "+r.Topic+" "+string(r.Payload))
	}
}

// relayTestJob has an MQTT output with a per-device topic and a log
// output.
func relayTestJob() *pb.Job {
	return &pb.Job{Name: "Press", Outputs: []*pb.JobOutput{
		{Name: "alerts", Sink: &pb.JobOutput_Mqtt{Mqtt: &pb.MqttSink{Topic: "plant/{job}/{output}/{deviceId}/x", Qos: 1}}},
		{Name: "log", Sink: &pb.JobOutput_Log{Log: &pb.LogSink{}}}}}
}

// TestMQTTOutputRelaysWhatItPublished: an MQTT output hands the rows it
// published to the relay, under the names their topics were made with;
// other outputs relay nothing (R1).
func TestMQTTOutputRelaysWhatItPublished(t *testing.T) {
	pub := &capturePublisher{}
	o := NewOutputs(pub, io.Discard)
	defer o.Close()
	relay := &captureRelay{}
	o.SetRelay(relay)
	require.NoError(t, o.Configure(relayTestJob()))
	rec := &value.Record{Names: []string{"deviceId", "t"}, Vals: []value.Value{value.Str("d1"), value.Int(7)}}
	row, ok := o.Encode("Press", "alerts", 0, rec, "00000000000000a1")
	require.True(t, ok)
	_, mq := o.sink("Press", "alerts")
	n, err := mq.deliver(context.Background(), []*pb.OutboxEntry{row.Entry})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	want := `plant/Press/alerts/d1/x {"_id":"00000000000000a1","deviceId":"d1","t":7}`
	require.Equal(t, []string{want}, pub.msgs)
	require.Equal(t, []string{"Press/alerts " + want}, relay.rows)

	logRow, ok := o.Encode("Press", "log", 0, rec, "00000000000000a2")
	require.True(t, ok)
	_, ls := o.sink("Press", "log")
	_, err = ls.deliver(context.Background(), []*pb.OutboxEntry{logRow.Entry})
	require.NoError(t, err)
	require.Len(t, relay.rows, 1, "a log output relays nothing")
}

// TestPublishRelayedOnlyWhatAnOutputCouldPublish: rows another gateway
// relays are published with this gateway's QoS when a job here has the
// output as MQTT and its template gives the topic; anything else is
// refused with ErrRelayRefused and not published (R2).
func TestPublishRelayedOnlyWhatAnOutputCouldPublish(t *testing.T) {
	pub := &capturePublisher{}
	o := NewOutputs(pub, io.Discard)
	defer o.Close()
	require.NoError(t, o.Configure(relayTestJob()))
	row := func(topic string) *pb.RelayedRow {
		return &pb.RelayedRow{Topic: topic, Payload: []byte(`{"_id":"00000000000000a1","deviceId":"d1"}`)}
	}
	n, err := o.PublishRelayed("Press", "alerts", []*pb.RelayedRow{row("plant/Press/alerts/d1/x"), row("plant/Press/alerts/a/b/x")})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	// The names the sender's topics were made with (the query's INTO
	// name may differ in case from the output's).
	n, err = o.PublishRelayed("press", "ALERTS", []*pb.RelayedRow{row("plant/press/ALERTS/d1/x")})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []byte{1, 1, 1}, pub.qos, "published with this gateway's QoS")

	cases := []struct {
		name, job, output string
		row               *pb.RelayedRow
	}{
		{"unknown job", "other", "alerts", row("plant/other/alerts/d1/x")},
		{"log output", "Press", "log", row("plant/Press/log/d1/x")},
		{"topic outside the template", "Press", "alerts", row("devices/d1/messages/events")},
		{"topic with another suffix", "Press", "alerts", row("plant/Press/alerts/d1/y")},
		{"wildcard topic", "Press", "alerts", row("plant/Press/alerts/#/x")},
		{"payload not a row", "Press", "alerts", &pb.RelayedRow{Topic: "plant/Press/alerts/d1/x", Payload: []byte(`{"cmd":"open valve"}`)}},
		{"payload not JSON", "Press", "alerts", &pb.RelayedRow{Topic: "plant/Press/alerts/d1/x", Payload: []byte(`{"_id":"00000000000000a1",`)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(pub.msgs)
			n, err := o.PublishRelayed(c.job, c.output, []*pb.RelayedRow{row("plant/Press/alerts/ok/x"), c.row, row("plant/Press/alerts/ok/x")})
			require.ErrorIs(t, err, ErrRelayRefused)
			if c.job == "Press" && c.output == "alerts" {
				require.Equal(t, 1, n, "published up to the bad row")
			} else {
				require.Zero(t, n, "no such output: nothing published")
			}
			require.Len(t, pub.msgs, before+n)
		})
	}
}

func TestMatchTemplate(t *testing.T) {
	s := &mqttSink{topic: "a/{job}/{x}/m/{y}/z"}
	tmpl := s.template("J", "O")
	require.Equal(t, []string{"a/J/", "/m/", "/z"}, tmpl)
	for topic, want := range map[string]bool{
		"a/J/1/m/2/z":     true,
		"a/J//m//z":       true,
		"a/J/1/m/m/2/z":   true,
		"a/J/1/m/2/z/z":   true,
		"a/J/1/2/z":       false,
		"a/K/1/m/2/z":     false,
		"a/J/1/m/2/zz":    false,
		"a/J/m/z":         false,
		"a/J/{x}/m/{y}/z": true,
	} {
		require.Equal(t, want, matchTemplate(tmpl, topic), topic)
	}
	require.True(t, matchTemplate((&mqttSink{topic: "fixed/{output}"}).template("J", "O"), "fixed/O"))
	require.False(t, matchTemplate((&mqttSink{topic: "fixed/{output}"}).template("J", "O"), "fixed/O/more"))
	require.True(t, matchTemplate((&mqttSink{topic: "{deviceId}"}).template("J", "O"), "anything/at/all"))
}
