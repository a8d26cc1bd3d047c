package cluster

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// captureSender keeps what a node sends to other gateways.
type captureSender struct {
	mu   sync.Mutex
	msgs map[string][]*pb.StreamMsg // by address
}

func (c *captureSender) Send(pid *actor.PID, msg any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := msg.(*pb.StreamMsg); ok && m.GetOutputRelay() != nil {
		c.msgs[pid.Address] = append(c.msgs[pid.Address], m)
	}
}

func (c *captureSender) relays(addr string) []*pb.StreamMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs[addr]
}

// relayNode is a harness node that sees gw2 (takes relayed rows) and gw3
// (does not), with the sends captured.
func relayNode(t *testing.T, queueBytes int64) (*harness, *captureSender) {
	h := newHarness(t)
	cs := &captureSender{msgs: map[string][]*pb.StreamMsg{}}
	h.n.out = cs
	h.n.cfg.RelayQueueBytes = queueBytes
	h.n.st = streams{from: h.n.name, addr: "127.0.0.1:7001", post: h.n.post, out: map[string]*outStream{}}
	h.n.mu.Lock()
	for _, m := range []Member{
		{Name: "gw2#a", Meta: &pb.NodeMeta{Gateway: "gw2", RemoteAddr: "127.0.0.1:7002", RelayOutputs: true}},
		{Name: "gw3#b", Meta: &pb.NodeMeta{Gateway: "gw3", RemoteAddr: "127.0.0.1:7003"}},
	} {
		h.n.view[m.Name] = m
		h.n.bases[m.Meta.Gateway] = m.Name
	}
	h.n.mu.Unlock()
	return h, cs
}

func outRows(k int) []*pb.OutboxEntry {
	rows := make([]*pb.OutboxEntry, k)
	for i := range rows {
		rows[i] = &pb.OutboxEntry{Id: fmt.Sprintf("%016x", i), Topic: "plant/j/o", Payload: []byte(fmt.Sprintf(`{"_id":"%016x","v":%d}`, i, i))}
	}
	return rows
}

// TestOutputRelayQueueIsBounded: rows go to the gateways that take
// relayed rows only; what waits for one peer's acknowledgement stays
// within the bound, the rest is dropped and counted without blocking,
// an acknowledgement makes room again, and what a peer that leaves had
// not acknowledged is counted lost (C15).
func TestOutputRelayQueueIsBounded(t *testing.T) {
	one, _ := relayBatch("j", "o", outRows(10))
	size := int64(len(mustMarshal(t, one)))
	h, cs := relayNode(t, 3*size)
	for i := 0; i < 5; i++ {
		h.n.RelayRows("j", "o", outRows(10))
	}
	require.Len(t, cs.relays("127.0.0.1:7002"), 3, "three batches fit gw2's queue")
	require.Empty(t, cs.relays("127.0.0.1:7003"), "gw3 takes no relayed rows")
	count := func(k string) uint64 { return h.n.relay.counts[k].Load() }
	require.Equal(t, uint64(30), count(relaySent))
	require.Equal(t, uint64(20), count(relayDropped))

	// gw2 acknowledges the first two: room for two more.
	sent := cs.relays("127.0.0.1:7002")
	h.deliver(&pb.StreamAck{From: "gw2#a", Session: sent[0].Session, Seq: sent[1].Seq})
	for i := 0; i < 3; i++ {
		h.n.RelayRows("j", "o", outRows(10))
	}
	require.Len(t, cs.relays("127.0.0.1:7002"), 5)
	require.Equal(t, uint64(50), count(relaySent))
	require.Equal(t, uint64(30), count(relayDropped))

	// gw2 leaves with three batches unacknowledged.
	h.n.memberGone("gw2#a")
	require.Equal(t, uint64(30), count(relayLost))
	h.n.relay.mu.Lock()
	require.Empty(t, h.n.relay.pending)
	h.n.relay.mu.Unlock()
}

// topicPublisher sends the topics published on it to a channel.
type topicPublisher chan string

func (p topicPublisher) Publish(topic string, _ []byte, _ byte) error {
	p <- topic
	return nil
}

// published drains the topics published so far.
func (p topicPublisher) published() []string {
	var out []string
	for {
		select {
		case t := <-p:
			out = append(out, t)
		default:
			return out
		}
	}
}

// TestRelayedRowsForUnknownTopicsAreRefused: relayed rows are published
// only for an MQTT output of a job deployed here, on a topic its
// template gives; rows for another topic or job, wildcard topics and
// oversized batches are refused and counted, and publish nothing (C14,
// R2).
func TestRelayedRowsForUnknownTopicsAreRefused(t *testing.T) {
	h := newHarness(t)
	pub := make(topicPublisher, 100)
	outs := actors.NewOutputs(pub, io.Discard)
	t.Cleanup(func() { outs.Close() })
	require.NoError(t, outs.Configure(&pb.Job{Name: "temps", Outputs: []*pb.JobOutput{
		{Name: "hot", Sink: &pb.JobOutput_Mqtt{Mqtt: &pb.MqttSink{Topic: "plant/{job}/{output}/{deviceId}", Qos: 1}}}}}))
	h.n.cfg.Relay = outs
	h.n.cfg.RelayQueueBytes = DefaultRelayQueueBytes
	row := func(topic string) *pb.RelayedRow {
		return &pb.RelayedRow{Topic: topic, Payload: []byte(`{"_id":"00000000000000a1","deviceId":"d1"}`)}
	}
	seq := uint64(0)
	relay := func(job, output string, rows ...*pb.RelayedRow) {
		seq++
		m := &pb.StreamMsg{From: peerMember, Session: 1, Seq: seq, Addr: "127.0.0.1:9",
			Body: &pb.StreamMsg_OutputRelay{OutputRelay: &pb.OutputRelay{Job: job, Output: output, Rows: rows}}}
		h.deliver(m)
		h.n.publishRelayed()
	}
	rejected := func(reason string) uint64 { return h.n.rej.counts[reason].Load() }

	relay("temps", "hot", row("plant/temps/hot/d1"), row("plant/temps/hot/d2"))
	require.Equal(t, []string{"plant/temps/hot/d1", "plant/temps/hot/d2"}, pub.published())
	require.Equal(t, uint64(2), h.n.relay.counts[relayPublished].Load())

	relay("temps", "hot", row("devices/d1/messages/events"))
	relay("other", "hot", row("plant/other/hot/d1"))
	relay("temps", "cold", row("plant/temps/cold/d1"))
	require.Equal(t, uint64(3), rejected(rejectOutput))
	require.Equal(t, uint64(3), h.n.relay.counts[relayRefused].Load())

	relay("temps", "hot", row("plant/temps/hot/#"))
	relay("temps", "hot", row("plant/temps/hot/\x00"))
	relay("temps", "hot", make([]*pb.RelayedRow, maxRelayRows+1)...)
	relay("", "hot", row("plant/temps/hot/d1"))
	require.Equal(t, uint64(4), rejected(rejectRange))
	relay("temps", "hot", &pb.RelayedRow{Topic: "plant/temps/hot/d1"})
	require.Equal(t, uint64(1), rejected(rejectMalformed))

	require.Empty(t, pub.published(), "nothing refused was published")
	require.Zero(t, rejected(rejectPanic))

	// A gateway that takes no relayed rows refuses them all.
	h.n.cfg.Relay = nil
	relay("temps", "hot", row("plant/temps/hot/d3"))
	require.Equal(t, uint64(4), rejected(rejectOutput))
	require.Empty(t, pub.published())
}
