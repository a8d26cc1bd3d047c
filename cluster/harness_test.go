package cluster

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// harness is a node without network or gossip over a real clustered
// gateway and store: what a message from another gateway does to a
// gateway can be checked on it (the handlers run synchronously).
type harness struct {
	n  *Node
	st *state.Store
	gw *actors.Gateway
}

// harnessParts is the harness cluster's number of partitions.
const harnessParts = 4

func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: harnessParts})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	gw := actors.New(actors.Config{Partitions: harnessParts, Store: st, Logger: logger, Clustered: true}, outs, nil)
	n := newNode(NodeConfig{Gateway: "gw1", Logger: logger, MaxMessageBytes: DefaultMaxMessageBytes, Replicas: 2,
		Quorum: QuorumMajority, Lease: time.Second, HandOffWait: time.Second, MinorityInput: MinorityLog}, gw)
	// A local actor system: what the node sends to other gateways ends
	// in its dead letters.
	n.system = actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger })))
	n.out = n.system.Root
	require.NoError(t, gw.SetCluster(n))
	t.Cleanup(func() {
		n.handlers.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Close(ctx)
		outs.Close()
		_ = st.Close()
	})
	return &harness{n: n, st: st, gw: gw}
}

// deliver hands a message to the cluster actor's handler and waits for
// the goroutines it started.
func (h *harness) deliver(msg any) {
	h.n.onStream(msg)
	h.n.handlers.Wait()
}

// stateOf is what a message could change on the gateway: per partition
// the epoch and last log position, whether it serves, and the jobs.
type harnessState struct {
	epochs  []uint64
	lastSeq []uint64
	serving []bool
	jobs    int
	jobLog  int
	known   int
}

func (h *harness) state(t testing.TB) harnessState {
	t.Helper()
	var s harnessState
	for p := 0; p < harnessParts; p++ {
		e, err := h.st.Epoch(p)
		require.NoError(t, err)
		s.epochs = append(s.epochs, e)
		s.lastSeq = append(s.lastSeq, h.st.LastSeq(p))
		s.serving = append(s.serving, h.gw.Serving(p))
	}
	s.jobs = len(h.gw.Jobs())
	h.n.mu.Lock()
	s.jobLog, s.known = len(h.n.jobLog), len(h.n.known)+len(h.n.forgotten)
	h.n.mu.Unlock()
	return s
}

// streamMsg is a message of a new stream from member from (seq 1).
func streamMsg(from string, session uint64, body any) *pb.StreamMsg {
	m := &pb.StreamMsg{From: from, Session: session, Seq: 1, Addr: "127.0.0.1:9"}
	switch b := body.(type) {
	case *pb.HandOff:
		m.Body = &pb.StreamMsg_Handoff{Handoff: b}
	case *pb.HandOffRequest:
		m.Body = &pb.StreamMsg_HandoffRequest{HandoffRequest: b}
	case *pb.ReplLog:
		m.Body = &pb.StreamMsg_Log{Log: b}
	case *pb.ReplCheckpoint:
		m.Body = &pb.StreamMsg_Checkpoint{Checkpoint: b}
	case *pb.ReplReset:
		m.Body = &pb.StreamMsg_Reset_{Reset_: b}
	case *pb.CaughtUp:
		m.Body = &pb.StreamMsg_CaughtUp{CaughtUp: b}
	case *pb.ForwardBatch:
		m.Body = &pb.StreamMsg_Forward{Forward: b}
	case *pb.ForwardDone:
		m.Body = &pb.StreamMsg_ForwardDone{ForwardDone: b}
	case *pb.JobUpdate:
		m.Body = &pb.StreamMsg_Job{Job: b}
	case *pb.ForgetGateway:
		m.Body = &pb.StreamMsg_Forget{Forget: b}
	case *pb.StatusRequest:
		m.Body = &pb.StreamMsg_StatusRequest{StatusRequest: b}
	case *pb.StatusReply:
		m.Body = &pb.StreamMsg_StatusReply{StatusReply: b}
	case *pb.OutputRelay:
		m.Body = &pb.StreamMsg_OutputRelay{OutputRelay: b}
	case *pb.EpochPromise:
		m.Body = &pb.StreamMsg_Promise{Promise: b}
	case *pb.EpochPromised:
		m.Body = &pb.StreamMsg_Promised{Promised: b}
	case nil:
	default:
		panic("streamMsg: unknown body")
	}
	return m
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
