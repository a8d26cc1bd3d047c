package cluster

import (
	"math"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Fuzz targets for every entry point of input from another gateway: the
// link guard (a gRPC batch before protoactor decodes it), the cluster
// actor (stream messages and acks) and the heartbeat actor. Each decodes
// the bytes as the link does, checks and handles them on a harness node
// (a real clustered gateway and store, no network), and fails on a panic
// (recovered ones are counted) or on a refused message that changed the
// gateway. Run each with, for example:
//
//	go test ./cluster/ -run '^$' -fuzz '^FuzzStreamMsg$' -fuzztime 20s

// streamSeeds are encoded stream messages, good and bad, of every kind.
func streamSeeds(t testing.TB) [][]byte {
	now := time.Now().UnixNano()
	e := &pb.LogEntry{Input: "readings", Device: "d1", Payload: []byte(`{"t":1}`), Origin: peerMember, OriginSeq: 1}
	bodies := []any{
		&pb.HandOff{Partition: 100000}, &pb.HandOff{Partition: 1, Epoch: 2, LastSeq: 3}, &pb.HandOffRequest{Partition: 2},
		&pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 2, FirstSeq: 1, Entries: []*pb.LogEntry{e, e}}}},
		&pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 2, FirstSeq: math.MaxUint64, Entries: []*pb.LogEntry{e}}}},
		&pb.ReplCheckpoint{Partition: 1, Epoch: 2, Safe: &pb.SafeCheckpoint{Checkpoint: &pb.Checkpoint{LogPosition: 2, Forwarded: map[uint32]uint64{1: 1}}, Through: 2, Epoch: 2}},
		&pb.ReplReset{Partition: 3, Epoch: 1}, &pb.CaughtUp{Partition: 3},
		&pb.ForwardBatch{Partition: 1, Id: 9, Entries: []*pb.LogEntry{e}}, &pb.ForwardDone{Id: 9, Refused: true, Error: "x"},
		&pb.JobUpdate{Removed: "temps", Version: now, Origin: peerMember},
		&pb.JobUpdate{Job: &pb.Job{Name: "j", Query: "SELECT deviceId INTO o FROM i"}, Version: now, Origin: peerMember},
		&pb.JobUpdate{Removed: "temps", Version: math.MaxInt64, Origin: peerMember},
		&pb.OutputRelay{Job: "temps", Output: "hot", Rows: []*pb.RelayedRow{{Topic: "plant/temps/hot", Payload: []byte(`{"_id":"00000000000000a1"}`)}}},
		&pb.OutputRelay{Job: "temps", Output: "hot", Rows: []*pb.RelayedRow{{Topic: "plant/#", Payload: []byte(`{}`)}}},
		&pb.ForgetGateway{Gateway: "gw9"}, &pb.StatusRequest{Id: 1}, &pb.StatusReply{Id: 1, Partitions: []*pb.PartitionHolding{{Partition: 1, Epoch: 1}}},
		&pb.EpochPromise{Id: 2, Partition: 1, Epoch: 3}, &pb.EpochPromise{Id: 2, Partition: 1, Epoch: 1 << 60},
		&pb.EpochPromised{Id: 2, Partition: 1, Ok: true, Promised: 3},
		nil,
	}
	var out [][]byte
	for i, b := range bodies {
		out = append(out, mustMarshal(t, streamMsg(peerMember, uint64(i+1), b)))
	}
	return out
}

// FuzzStreamMsg: a stream message to the cluster actor, as the first of a
// new session (so it is applied, not held back for its sequence number).
func FuzzStreamMsg(f *testing.F) {
	for _, s := range streamSeeds(f) {
		f.Add(s)
	}
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.StreamMsg
		if proto.Unmarshal(data, &m) != nil {
			return // protoactor drops what does not decode
		}
		m.Seq = 1
		h.n.mu.Lock()
		delete(h.n.in, m.From)
		h.n.mu.Unlock()
		checkHandled(t, h, &m, func() error {
			if err := checkHeader(&m); err != nil {
				return err
			}
			return checkBody(&m, harnessParts, time.Now().UnixNano())
		})
	})
}

// FuzzStreamAck: an ack to the cluster actor and to the heartbeat actor.
func FuzzStreamAck(f *testing.F) {
	f.Add(mustMarshal(f, &pb.StreamAck{From: peerMember, Session: 1, Seq: 1}))
	f.Add(mustMarshal(f, &pb.StreamAck{From: peerMember, Session: math.MaxUint64, Unknown: true}))
	f.Add(mustMarshal(f, &pb.StreamAck{From: "x", Session: 1}))
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var a pb.StreamAck
		if proto.Unmarshal(data, &a) != nil {
			return
		}
		checkHandled(t, h, &a, func() error { return checkAck(&a) })
		h.n.onHeartbeat(&a)
		h.n.mu.Lock()
		for member, at := range h.n.contact {
			if at.After(time.Now()) {
				h.n.mu.Unlock()
				t.Fatalf("a heartbeat answer put %s's last contact in the future", member)
			}
		}
		h.n.mu.Unlock()
		requireNoPanic(t, h)
	})
}

// FuzzHeartbeat: a ping to the heartbeat actor.
func FuzzHeartbeat(f *testing.F) {
	f.Add(mustMarshal(f, &pb.StreamMsg{From: peerMember, Addr: "127.0.0.1:9", Session: 1}))
	f.Add(mustMarshal(f, &pb.StreamMsg{From: peerMember, Addr: "nowhere", Session: 1}))
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.StreamMsg
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		m.Seq = 0
		h.n.onHeartbeat(&m)
		h.n.onStream(&m) // a ping that reached the cluster actor is ignored
		requireNoPanic(t, h)
	})
}

// checkHandled delivers msg to the cluster actor's handler: no panic, and
// a message its check refuses changes nothing.
func checkHandled(t *testing.T, h *harness, msg proto.Message, check func() error) {
	t.Helper()
	before := h.state(t)
	h.deliver(msg)
	requireNoPanic(t, h)
	if err := check(); err != nil {
		if after := h.state(t); !equalState(before, after) {
			t.Fatalf("refused message (%v) changed the gateway: %+v -> %+v", err, before, after)
		}
		return
	}
	after := h.state(t)
	for p, e := range after.epochs {
		if e > maxEpoch+1 || after.lastSeq[p] > maxSeq+1 {
			t.Fatalf("partition %d at epoch %d, last seq %d after an accepted message", p, e, after.lastSeq[p])
		}
	}
}

func requireNoPanic(t *testing.T, h *harness) {
	t.Helper()
	if c := h.n.rej.counts[rejectPanic].Load(); c > 0 {
		t.Fatalf("handling a message panicked (%d recovered)", c)
	}
}

func equalState(a, b harnessState) bool {
	if a.jobs != b.jobs || a.jobLog != b.jobLog || a.known != b.known {
		return false
	}
	for p := range a.epochs {
		if a.epochs[p] != b.epochs[p] || a.lastSeq[p] != b.lastSeq[p] || a.serving[p] != b.serving[p] {
			return false
		}
	}
	return true
}

// FuzzLinkBatch: a batch as a peer with gw2's certificate sends it. What
// the guard lets through must not make protoactor index past the batch,
// must decode, and must come from a live member of gw2: the sender the
// guard read without decoding is the one the decoder sees.
func FuzzLinkBatch(f *testing.F) {
	for _, s := range streamSeeds(f) {
		f.Add(mustMarshal(f, &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: &remote.MessageBatch{
			TypeNames: []string{streamMsgType, streamAckType}, Targets: []string{nodeActor, heartbeatActor},
			Envelopes: []*remote.MessageEnvelope{{TypeId: 0, Target: 0, MessageData: s}, {TypeId: 1, Target: 1, MessageData: s}, {TypeId: 2, Target: 3}}}}}))
	}
	g := newLinkGuard(true, newRejections(discardLogger()), 1<<20)
	g.memberUp(peerMember, &pb.NodeMeta{RemoteAddr: "127.0.0.1:7001"})
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rm remote.RemoteMessage
		if proto.Unmarshal(data, &rm) != nil {
			return
		}
		b := rm.GetMessageBatch()
		if b == nil {
			return
		}
		g.filter(b, "gw2", from)
		for _, e := range b.Envelopes {
			// What protoactor's endpoint reader does with each envelope.
			typeName := b.TypeNames[e.TypeId]
			_ = b.Targets[e.Target]
			if e.Sender > 0 {
				_ = b.Senders[e.Sender-1]
			}
			var sender string
			switch typeName {
			case streamMsgType:
				var m pb.StreamMsg
				if proto.Unmarshal(e.MessageData, &m) != nil {
					continue // protoactor ends the stream
				}
				sender = m.From
			case streamAckType:
				var a pb.StreamAck
				if proto.Unmarshal(e.MessageData, &a) != nil {
					continue
				}
				sender = a.From
			default:
				t.Fatalf("type %q let through", typeName)
			}
			if sender != peerMember {
				t.Fatalf("sender %q let through for gw2 (guard read %v)", sender, e.MessageData)
			}
		}
		if g.rej.counts[rejectPanic].Load() > 0 {
			t.Fatal("panic")
		}
	})
}
