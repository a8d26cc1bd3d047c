package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/testutil"
)

// relayJob is a job with an MQTT output on the gateways' embedded
// brokers: the hopping-window query of the cluster tests, one topic per
// device (the {deviceId} of the template is filled in per row).
const relayJob = `  - name: hopmq
    query: |
%s
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs:
      - {name: hop, mqtt: {topic: "millstream/{job}/{output}/{deviceId}", qos: 1}}
    policy: {late_arrival_tolerance: 86400s, out_of_order_tolerance: 5s}
`

// outputSubscriber is an MQTT subscriber of one gateway's embedded
// broker: every row it received, by "_id".
type outputSubscriber struct {
	gateway string
	c       paho.Client

	mu     sync.Mutex
	rows   map[string]string // _id -> row without _id, normalized
	dups   int               // rows received again with an id seen
	badIDs int               // rows without an _id, or not JSON
}

// subscribeOutput subscribes (QoS 1) to filter on a gateway's broker.
func subscribeOutput(t *testing.T, g *clusterGateway, filter string) *outputSubscriber {
	s := &outputSubscriber{gateway: g.name, rows: map[string]string{}}
	opts := paho.NewClientOptions().AddBroker("tcp://" + g.mqtt).SetClientID("sub-" + g.name).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	s.c = paho.NewClient(opts)
	tok := s.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second), "connect to %s", g.name)
	require.NoError(t, tok.Error(), "connect to %s", g.name)
	tok = s.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { s.take(m.Payload()) })
	require.True(t, tok.WaitTimeout(10*time.Second), "subscribe on %s", g.name)
	require.NoError(t, tok.Error(), "subscribe on %s", g.name)
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *outputSubscriber) take(payload []byte) {
	var m map[string]any
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := json.Unmarshal(payload, &m); err != nil {
		s.badIDs++
		return
	}
	id, _ := m["_id"].(string)
	if id == "" {
		s.badIDs++
		return
	}
	delete(m, "_id")
	b, _ := json.Marshal(m)
	if _, ok := s.rows[id]; ok {
		s.dups++
		return
	}
	s.rows[id] = string(b)
}

// got is what the subscriber received: the rows (sorted) without the
// sentinel windows, the repeats of an id, and the rows without an id.
func (s *outputSubscriber) got(cut time.Time) (rows []string, dups, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		var m map[string]any
		_ = json.Unmarshal([]byte(r), &m)
		if !sentinelRow(m, cut) {
			rows = append(rows, r)
		}
	}
	sort.Strings(rows)
	return rows, s.dups, s.badIDs
}

// TestClusterOutputsReachEverySubscriber: three gateways run a job whose
// MQTT output goes to their embedded brokers; a subscriber on each
// gateway's broker subscribes to the output's topics before the load.
// Each subscriber gets every row of the output exactly once (by "_id"),
// equal row by row to one uninterrupted run, though each gateway serves
// only about a third of the partitions: the rows of the others reach it
// over the cluster link (the output relay).
func TestClusterOutputsReachEverySubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three gateway processes; runs without -short")
	}
	c := newTestCluster(t, "")
	c.moreJobs = fmt.Sprintf(relayJob, indent(hopQuery, "      "))
	for i := 0; i < 3; i++ {
		c.add()
	}
	c.waitSettled(c.gws, 30*time.Second)
	subs := make([]*outputSubscriber, len(c.gws))
	for i, g := range c.gws {
		subs[i] = subscribeOutput(t, g, "millstream/hopmq/hop/#")
	}
	const rounds = 500
	s, all := clusterInput(t, 18, rounds)
	want := all["hop"]
	require.NotEmpty(t, want)
	resends := c.runClusterLoad(s, rounds, func(int) {})
	t.Logf("published %d events (%d resends); the output has %d rows", s.devices*rounds, resends, len(want))
	cut := s.base.Add(30 * time.Minute)
	// The file output of the same query says when every row is out.
	c.waitOutputs(map[string][]string{"hop": want}, cut, 2*time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for {
		complete := true
		for _, sub := range subs {
			if rows, _, _ := sub.got(cut); len(rows) < len(want) {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A moment more: a row sent twice would arrive now.
	time.Sleep(time.Second)
	for _, sub := range subs {
		rows, dups, bad := sub.got(cut)
		t.Logf("subscriber on %s: %d of %d rows, %d repeated ids, %d rows without an id", sub.gateway, len(rows), len(want), dups, bad)
	}
	for _, sub := range subs {
		rows, dups, bad := sub.got(cut)
		require.Zero(t, bad, "%s: rows without an _id", sub.gateway)
		require.Zero(t, dups, "%s: rows received twice (no fail-over in this test)", sub.gateway)
		if n := normalize(t, rows); !slices.Equal(want, n) {
			t.Fatalf("subscriber on %s: %d of %d rows; missing (at most 20):\n  %s", sub.gateway, len(n), len(want),
				strings.Join(missing(want, n), "\n  "))
		}
	}
	var sent, published float64
	for _, g := range c.gws {
		body, err := httpGet("http://" + g.admin + "/metrics")
		require.NoError(t, err)
		t.Logf("%s:\n%s", g.name, logLinesWith(string(body), "millstream_output_relay_"))
		kind := func(k string) float64 {
			return testutil.SeriesValue(t, string(body), `millstream_output_relay_rows_total{kind="`+k+`"}`)
		}
		for _, k := range []string{"dropped", "lost", "refused", "overflow"} {
			require.Zero(t, kind(k), "%s: relayed rows %s", g.name, k)
		}
		sent, published = sent+kind("sent"), published+kind("published")
	}
	require.Positive(t, sent)
	require.Equal(t, sent, published, "every row sent to a peer was published there")
}
