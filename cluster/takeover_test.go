package cluster

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// The take-over tests run several nodes in one process without gossip or
// protoactor remote (two remotes in one process race on a gRPC global):
// each node's streams post into a testNet, and the test delivers what is
// posted when it chooses, so an interleaving of the nemesis runs the same
// way every time.

// testNet holds the stream messages nodes post to each other until the
// test delivers them.
type testNet struct {
	mu      sync.Mutex
	nodes   map[string]*Node // by remote address
	pending []posted
	posted  chan struct{} // a message was posted
	acks    []*pb.StreamAck
	// holdPromises: EpochPromise and EpochPromised wait to be delivered
	// like the rest (otherwise they are delivered at once).
	holdPromises bool
}

type posted struct {
	to  string // remote address
	msg *pb.StreamMsg
}

func newTestNet() *testNet {
	return &testNet{nodes: map[string]*Node{}, posted: make(chan struct{}, 1024)}
}

func (tn *testNet) post(pid *actor.PID, msg any) {
	if a, ok := msg.(*pb.StreamAck); ok {
		tn.mu.Lock()
		tn.acks = append(tn.acks, a) // kept for the tests that deliver them
		tn.mu.Unlock()
		return
	}
	m, ok := msg.(*pb.StreamMsg)
	if !ok || m.Seq == 0 {
		return // heartbeats: the tests need none
	}
	if (m.GetPromise() != nil || m.GetPromised() != nil) && !tn.holdPromises {
		// The epoch promise round (C16) goes through at once, unless
		// the test holds it.
		tn.mu.Lock()
		n := tn.nodes[pid.Address]
		tn.mu.Unlock()
		go n.apply(m)
		return
	}
	tn.mu.Lock()
	tn.pending = append(tn.pending, posted{to: pid.Address, msg: m})
	tn.mu.Unlock()
	tn.posted <- struct{}{}
}

// netSender is what a test node's post (acks) sends through.
type netSender struct{ tn *testNet }

func (s netSender) Send(pid *actor.PID, msg any) { s.tn.post(pid, msg) }

// take removes and returns the pending messages that match.
func (tn *testNet) take(match func(*pb.StreamMsg) bool) []posted {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out, keep []posted
	for _, p := range tn.pending {
		if match(p.msg) {
			out = append(out, p)
		} else {
			keep = append(keep, p)
		}
	}
	tn.pending = keep
	return out
}

// waitFor waits until n messages that match are pending.
func (tn *testNet) waitFor(t *testing.T, n int, match func(*pb.StreamMsg) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		tn.mu.Lock()
		defer tn.mu.Unlock()
		k := 0
		for _, p := range tn.pending {
			if match(p.msg) {
				k++
			}
		}
		return k >= n
	}, 10*time.Second, time.Millisecond)
}

// deliver hands messages to their receivers, in order, as the node actor
// would (stream bookkeeping aside: nothing is lost here).
func (tn *testNet) deliver(ps []posted) {
	for _, p := range ps {
		tn.mu.Lock()
		n := tn.nodes[p.to]
		tn.mu.Unlock()
		n.apply(p.msg)
	}
}

// exchange lets k take-overs under way ask their questions and hear the
// answers.
func (tn *testNet) exchange(t *testing.T, k int) {
	t.Helper()
	tn.waitFor(t, k, isStatusRequest)
	tn.deliver(tn.take(isStatusRequest))
	tn.waitFor(t, k, isStatusReply)
	tn.deliver(tn.take(isStatusReply))
}

func isStatusRequest(m *pb.StreamMsg) bool { return m.GetStatusRequest() != nil }
func isStatusReply(m *pb.StreamMsg) bool   { return m.GetStatusReply() != nil }

// newTestNode starts a clustered gateway (durable, no jobs) and a node for
// it on the test network. The node hears from a majority (a lease of an
// hour) and has been running for longer than startGrace.
func newTestNode(t *testing.T, tn *testNet, name string, parts int) *Node {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: parts})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	gw := actors.New(actors.Config{Partitions: parts, Store: st, Logger: logger, Clustered: true}, outs, nil)
	n := newNode(NodeConfig{Gateway: name, Replicas: 2, Quorum: QuorumMajority, Lease: time.Hour, HandOffWait: time.Second, Logger: logger}, gw)
	addr := "test/" + name
	n.ml = &Membership{changes: make(chan struct{}, 1)}
	n.st = streams{from: n.name, addr: addr, post: tn.post, out: map[string]*outStream{}}
	n.out = netSender{tn}
	n.startedAt = time.Now().Add(-2 * startGrace)
	n.quorumAt.Store(time.Now().UnixNano())
	require.NoError(t, gw.SetCluster(n))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, gw.Recover(ctx))
	t.Cleanup(func() {
		close(n.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, gw.Close(ctx))
		outs.Close()
		require.NoError(t, st.Close())
	})
	tn.mu.Lock()
	tn.nodes[addr] = n
	tn.mu.Unlock()
	return n
}

// meet puts every node in every node's view, as gossip would.
func meet(nodes ...*Node) {
	for _, n := range nodes {
		n.mu.Lock()
		for _, m := range nodes {
			n.view[m.name] = Member{Name: m.name, Meta: &pb.NodeMeta{RemoteAddr: m.st.addr, Gateway: m.cfg.Gateway}}
			n.bases[m.cfg.Gateway] = m.name
			n.known[m.cfg.Gateway] = true
		}
		n.viewSince = time.Now().Add(-time.Second)
		n.mu.Unlock()
	}
}

// pairHolding makes gateways gw1 and other, each with a copy of partition
// 1 at epoch 1 (entries log entries each), and nobody serving it.
func pairHolding(t *testing.T, other string, entries1, entries2 int) (*testNet, *Node, *Node) {
	t.Helper()
	tn := newTestNet()
	a := newTestNode(t, tn, "gw1", 2)
	b := newTestNode(t, tn, other, 2)
	meet(a, b)
	holdPartition(t, a, 1, 1, entries1)
	if entries2 > 0 {
		holdPartition(t, b, 1, 1, entries2)
	}
	return tn, a, b
}

// holdPartition gives the node a copy of partition p as a replica holds
// it: epoch and log entries 1..entries.
func holdPartition(t *testing.T, n *Node, p int, epoch uint64, entries int) {
	t.Helper()
	require.NoError(t, n.setEpoch(p, epoch))
	es := make([]*pb.LogEntry, entries)
	for i := range es {
		es[i] = &pb.LogEntry{Device: "dev", Input: "readings", Payload: []byte(`{"seq":1}`)}
	}
	require.NoError(t, n.store.AppendAt(p, 1, 0, es))
}

// runTakeOver claims p and starts a take-over of it, as the loop does; the
// channel closes when the take-over has ended.
func runTakeOver(t *testing.T, n *Node, p int) <-chan struct{} {
	t.Helper()
	require.True(t, n.claim(p))
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.takeOver(p)
	}()
	return done
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("take-over did not end")
	}
}

// TestConcurrentTakeOversServeOnce is the interleaving behind the churn
// finding (benchmarks/RESULTS.md, "Faults"), seed 849: right after every
// gateway restarted, gw1 was told to drain; it still placed itself while
// gw4, which saw gw1 draining, placed without it, so both were owner of
// partition 11 in their own view. Both asked the other what it held before
// either served, both found an equal copy and nobody serving, and both
// served partition 11 at epoch 2, each numbering new log entries from the
// same position. Partition 0 applies a forwarded event once by (source
// partition, source position): it dropped one gateway's events at
// positions it had applied from the other (a reading missed) and applied a
// reading both had logged at different positions twice (a reading
// repeated). A take-over now says so in its answers while it lasts, and a
// gateway that finds another taking the partition over backs off, so at
// most one of two concurrent take-overs serves.
func TestConcurrentTakeOversServeOnce(t *testing.T) {
	const p = 1
	// Equal copies: each gateway is the best holder in its own eyes.
	tn, a, b := pairHolding(t, "gw4", 3, 3)

	doneA := runTakeOver(t, a, p)
	doneB := runTakeOver(t, b, p)
	// Both ask before either answers.
	tn.exchange(t, 2)
	waitDone(t, doneA)
	waitDone(t, doneB)
	require.False(t, a.gw.Serving(p) && b.gw.Serving(p), "two gateways serve partition %d at epoch %d", p, a.gw.Epoch(p))

	// Backing off is not giving up: the next attempt, alone, serves.
	if !a.gw.Serving(p) && !b.gw.Serving(p) {
		done := runTakeOver(t, a, p)
		tn.exchange(t, 1)
		waitDone(t, done)
	}
	require.True(t, a.gw.Serving(p) != b.gw.Serving(p), "exactly one gateway serves partition %d", p)
}

// TestTakeOverWaitsForEveryAnswer: a gateway in the view that does not
// answer may be taking the partition over itself; deciding without its
// answer could serve the partition twice. The take-over backs off (the
// loop tries again).
func TestTakeOverWaitsForEveryAnswer(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw2", 3, 0)

	done := runTakeOver(t, a, p)
	tn.waitFor(t, 1, isStatusRequest)
	tn.take(isStatusRequest) // lost: gw2 never answers
	waitDone(t, done)
	require.False(t, a.gw.Serving(p), "served without gw2's answer")
	require.False(t, b.gw.Serving(p))
}

// TestTakingIsReported: from its first question until it serves, a
// gateway taking a partition over tells whoever asks, also while it waits
// for the best holder to hand the partition over.
func TestTakingIsReported(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw2", 3, 5) // gw2 holds more: gw1 asks it for a hand-off

	taking := func(n *Node) bool {
		for _, h := range n.holdings(0, "gw9#1").Partitions {
			if int(h.Partition) == p {
				return h.Taking
			}
		}
		return false
	}
	require.False(t, taking(a))
	done := runTakeOver(t, a, p)
	tn.waitFor(t, 1, isStatusRequest)
	require.True(t, taking(a), "asking the holders")
	tn.exchange(t, 1)
	waitDone(t, done)
	tn.waitFor(t, 1, func(m *pb.StreamMsg) bool { return m.GetHandoffRequest() != nil })
	require.False(t, a.gw.Serving(p))
	require.True(t, taking(a), "waiting for the hand-off it asked for")
	require.False(t, taking(b))
}

// TestDrainingGatewayTakesNothingOver: a gateway that announced its drain
// is placed by the others as gone, while its own placement keeps it until
// drainSettle has passed. It must not take a partition over meanwhile:
// the owner in the others' placement does (seed 849's gw1 and gw4).
func TestDrainingGatewayTakesNothingOver(t *testing.T) {
	const parts = 8
	tn := newTestNet()
	a := newTestNode(t, tn, "gw1", parts)
	b := newTestNode(t, tn, "gw2", parts)
	meet(a, b)
	tbl, err := Place(parts, 2, []string{"gw1", "gw2"})
	require.NoError(t, err)
	owns := 0
	for _, as := range tbl.Partitions {
		if as.Owner == "gw1" {
			owns++
		}
	}
	require.NotZero(t, owns, "gw1 owns no partition: the test shows nothing")
	claimed := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		k := 0
		for _, busy := range a.busy {
			if busy {
				k++
			}
		}
		return k
	}

	a.announceDrain.Store(true)
	a.reconcile()
	require.Zero(t, claimed(), "a draining gateway started take-overs")

	// The check is on the drain: the same gateway not draining takes over
	// the partitions it owns (here it waits for gw2's answers in vain and
	// backs off).
	a.announceDrain.Store(false)
	a.reconcile()
	require.Equal(t, owns, claimed())
	tn.waitFor(t, owns, isStatusRequest)
	require.Eventually(t, func() bool { return claimed() == 0 }, 10*time.Second, 10*time.Millisecond)
}

// TestHandOffRequestForADroppedCopyIsRefused (seed 849, with the take-over
// fix): gw1 chose gw4 as the best holder of partition 10 from its answer
// (epoch 5, log to 3,783), but gw4, cut off meanwhile, gave the partition
// up and dropped its copy before the request arrived. It caught gw1 up
// from nothing, which reset gw1's own copy, and gw1 served partition 10
// from an empty log: acknowledged readings lost, and its new log entries
// numbered from 1, so partition 0 dropped every event partition 10
// forwarded as one it had applied, and the global jobs' windows never
// closed. A holder refuses a request for more than it still holds.
func TestHandOffRequestForADroppedCopyIsRefused(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 5) // gw4 holds more: gw1 asks it for a hand-off
	done := runTakeOver(t, a, p)
	tn.exchange(t, 1)
	waitDone(t, done)
	isRequest := func(m *pb.StreamMsg) bool { return m.GetHandoffRequest() != nil }
	tn.waitFor(t, 1, isRequest)

	// What Abandon does to a copy another gateway holds too.
	require.NoError(t, b.store.ResetPartition(p))
	req := tn.take(isRequest)
	require.Len(t, req, 1)
	b.handOffRequested(a.name, req[0].msg.GetHandoffRequest())
	sent := tn.take(func(*pb.StreamMsg) bool { return true })
	require.Empty(t, sent, "gw4 caught gw1 up from a copy it no longer holds")
	require.Equal(t, uint64(3), a.store.LastSeq(p))

	// The next attempt finds gw1's own copy the best and serves it.
	done = runTakeOver(t, a, p)
	tn.exchange(t, 1)
	waitDone(t, done)
	require.True(t, a.gw.Serving(p))
	require.Equal(t, uint64(3), a.store.LastSeq(p))
}

// handedToTheAsker makes gw1 take partition p over by asking gw4, the
// best holder, for it, and gw4 hand it over; it returns gw1's request.
func handedToTheAsker(t *testing.T, p int) (*testNet, *Node, *Node, *pb.HandOffRequest) {
	t.Helper()
	tn, a, b, req := askingTheHolder(t, p)
	b.handOffRequested(a.name, req)
	require.NotEmpty(t, tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil }))
	return tn, a, b, req
}

// askingTheHolder makes gw1 take partition p over and ask gw4, the best
// holder, for it; it returns the request, not yet delivered.
func askingTheHolder(t *testing.T, p int) (*testNet, *Node, *Node, *pb.HandOffRequest) {
	t.Helper()
	tn, a, b := pairHolding(t, "gw4", 3, 5)
	done := runTakeOver(t, a, p)
	tn.exchange(t, 1)
	waitDone(t, done)
	req := tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoffRequest() != nil })
	require.Len(t, req, 1)
	return tn, a, b, req[0].msg.GetHandoffRequest()
}

// TestHandingOffIsReported: a gateway that hands a partition off tells
// the other gateways it is taking it over until the receiver has surely
// marked it (so none asks it for a second hand-off meanwhile), but not the
// receiver, which may take it over itself, as it would serve it anyway.
func TestHandingOffIsReported(t *testing.T) {
	const p = 1
	_, a, b, _ := handedToTheAsker(t, p)

	taking := func(asker string) bool { return b.holdings(0, asker).Partitions[p].Taking }
	require.True(t, taking("gw2#1"), "told to another gateway")
	require.False(t, taking(a.name), "told to the receiver")
}

// TestReceiverDoesNotTakeOverDuringHandOff is the interleaving behind a
// reading lost in TestClusterParkedInputSurvivesKill9: gw1 served
// partition 1 and began handing it to its owner, gw4, just back from a
// restart and caught up as a replica (same epoch, same entries). gw4's
// loop, seeing nobody serving, asked gw1 what it held while gw1 had
// stopped intake but not yet sent the HandOff. gw1 answered "not serving",
// its mark hidden from the receiver, and gw4 found an equal copy and took
// the partition over; the entries of gw1's last group commit, logged and
// replicated after its answer and acknowledged by the other replica, were
// ignored by gw4 as replication for a partition it served. Until the
// HandOff is sent the receiver too must see the mark and back off.
func TestReceiverDoesNotTakeOverDuringHandOff(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 0)
	// gw1 serves p at epoch 2; gw4 is its caught-up replica.
	a.serve(p, 1, "take-over")
	require.True(t, a.gw.Serving(p))
	holdPartition(t, b, p, 2, 3)

	tookOver := make(chan bool, 1)
	testHookHandOffReady = func(n *Node, q int) {
		if n != a || q != p {
			return
		}
		done := runTakeOver(t, b, p)
		tn.exchange(t, 1)
		waitDone(t, done)
		tookOver <- b.gw.Serving(p)
	}
	t.Cleanup(func() { testHookHandOffReady = nil })
	require.True(t, a.claim(p))
	a.handOff(p, b.name)
	require.False(t, <-tookOver, "gw4 took the partition over while gw1 was still handing it off")

	// The HandOff then makes gw4 serve it.
	hand := tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil })
	require.Len(t, hand, 1)
	tn.deliver(hand)
	require.Eventually(t, func() bool { return b.gw.Serving(p) }, 10*time.Second, 10*time.Millisecond)
	require.False(t, a.gw.Serving(p))
}

// TestHandOffCarriesTheNewestEpoch is the interleaving behind seed 3's
// losses under churn: gw1 had served partition 1 at epoch 2, gave it up,
// and then held it as a replica of the gateway that served it at epoch 4.
// Asked to hand it to gw4, gw1 caught gw4 up and sent the HandOff with the
// epoch it had last served at (2), so gw4 served at 3, an epoch below one
// already used; gw4's catch-up had also moved gw4's stored epoch back.
// The replicas that knew epoch 4 ignored gw4's replication as stale. The
// catch-up and the HandOff now carry the newest epoch gw1 holds, and a
// catch-up from a stale epoch is refused.
func TestHandOffCarriesTheNewestEpoch(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 0)
	a.serve(p, 1, "take-over") // epoch 2
	require.True(t, a.gw.Serving(p))
	require.Equal(t, uint64(2), a.gw.Epoch(p))
	require.True(t, a.claim(p))
	a.abandon(p) // gives it up, keeps its copy
	require.False(t, a.gw.Serving(p))
	a.mu.Lock()
	a.holding[p] = "gw2#1" // caught up by the gateway serving at epoch 4
	a.mu.Unlock()
	require.True(t, a.acceptReplication("gw2#1", p, 4), "a replica of the gateway serving at epoch 4")

	require.True(t, a.claim(p))
	a.handOff(p, b.name)
	reset := tn.take(func(m *pb.StreamMsg) bool { return m.GetReset_() != nil })
	require.Len(t, reset, 1)
	require.Equal(t, uint64(4), reset[0].msg.GetReset_().Epoch, "catch-up epoch")
	hand := tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil })
	require.Len(t, hand, 1)
	require.Equal(t, uint64(4), hand[0].msg.GetHandoff().Epoch, "hand-off epoch")

	// A catch-up from a stale epoch does not move a copy's epoch back.
	holdPartition(t, b, 0, 6, 1)
	b.apply(&pb.StreamMsg{From: a.name, Seq: 1, Body: &pb.StreamMsg_Reset_{Reset_: &pb.ReplReset{Partition: 0, Epoch: 5}}})
	e, err := b.epoch(0)
	require.NoError(t, err)
	require.Equal(t, uint64(6), e)
	require.Equal(t, uint64(1), b.store.LastSeq(0), "the newer copy is kept")
}

// TestStaleReplicaRefusalFailsTheCommit is the interleaving behind seed
// 12's losses under churn: gw1 served partition 1, was paused (SIGSTOP)
// long enough for gw4 to take the partition over at a newer epoch, and on
// waking still served it in its own eyes. It logged what was queued for
// the partition (forwarded readings among them) and replicated it; gw4
// refused the replication as stale but acknowledged the stream message,
// so gw1 counted the commit replicated and acknowledged the forwards,
// which nobody applied. The ack now says the replication was refused, and
// the commit fails: its publishers and forwarders resend.
func TestStaleReplicaRefusalFailsTheCommit(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 3)
	a.serve(p, 1, "take-over") // epoch 2
	require.True(t, a.gw.Serving(p))
	a.mu.Lock()
	a.replicas[p][b.name] = &replica{caughtUp: true, since: time.Now()}
	a.mu.Unlock()
	b.mu.Lock()
	b.holding[p] = a.name // a caught b up before it was paused
	b.mu.Unlock()
	require.NoError(t, b.setEpoch(p, 3)) // b took it over meanwhile

	commit := func() error { return commitEntry4(t, tn, a, b, p) }
	require.ErrorIs(t, commit(), errReplicaRefused, "acknowledged although the replica refused it")
	require.NoError(t, b.setEpoch(p, 2)) // the same epoch as a: accepted
	require.NoError(t, commit())
}

// TestParkedForwardAnswersErrParked: cut off from the majority, Forward
// parks the entries and answers actors.ErrParked, not nil, so a forward
// to partition 0 does not count as logged there (the source keeps its
// log), while a publisher's event still counts as taken.
func TestParkedForwardAnswersErrParked(t *testing.T) {
	tn := newTestNet()
	a := newTestNode(t, tn, "gw1", 2)
	a.quorumAt.Store(0) // has not heard a majority: cut off
	require.True(t, a.parking())
	got := make(chan error, 1)
	a.Forward(0, []*pb.LogEntry{{Device: "dev", Input: "readings", Payload: []byte(`{"seq":1}`)}}, func(err error) { got <- err })
	select {
	case err := <-got:
		require.ErrorIs(t, err, actors.ErrParked)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	require.EqualValues(t, 1, a.parkedNow.Load())
}

// TestHolderHandsAPartitionToOneRequester (churn nemesis seed 101): gw2
// asked gw1, the best holder, for partition 13 and was paused for 8 s
// right after. gw3, seeing nobody serving, asked gw1 too and got it. gw2's
// request, waiting for the claim meanwhile, was then granted as well: gw2
// woke and served partition 13 from gw1's copy while gw3 served it, and
// ignored gw3's entries as replication for a partition it served. A holder
// that has handed a partition to one gateway refuses another's request
// while that HandOff may still be on its way.
func TestHolderHandsAPartitionToOneRequester(t *testing.T) {
	const p = 1
	tn, a, b, req := handedToTheAsker(t, p)

	// The same request from a gateway paused since it asked.
	c := newTestNode(t, tn, "gw2", 2)
	meet(a, b, c)
	b.handOffRequested(c.name, req)
	require.Empty(t, tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil }),
		"the partition handed to a second gateway")
}

// TestHolderRefusesWhenAnotherServes: a request that reaches a holder
// after another gateway began serving the partition (its gossip says so)
// is refused: the asker's view was older than the holder's.
func TestHolderRefusesWhenAnotherServes(t *testing.T) {
	const p = 1
	tn, a, b, req := askingTheHolder(t, p)
	c := newTestNode(t, tn, "gw2", 2)
	meet(a, b, c)
	b.mu.Lock()
	m := b.view[c.name]
	m.Meta.Serving = []byte{1 << p}
	b.view[c.name] = m
	b.mu.Unlock()
	b.handOffRequested(a.name, req)
	require.Empty(t, tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil }), "handed over while gw2 serves it")
}

// TestGiveUpKeepsTheCopy is the interleaving behind seed 101's losses
// under load: gw1 served partition 1 and replicated it to a caught-up
// replica; cut off, gw1 gave the partition up and, since that replica had
// all of it, dropped its copy, keeping its epoch. The replica was then
// paused. gw4, taking the partition over with gw1's answer alone, found
// gw1's copy the newest (epoch 2, nothing in it) and had gw1 hand the
// partition over: every entry since the last checkpoint was lost. A
// gateway that gives a partition up keeps its copy.
func TestGiveUpKeepsTheCopy(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 5, 0)
	a.serve(p, 1, "take-over") // epoch 2
	require.True(t, a.gw.Serving(p))
	held := a.store.LastSeq(p)
	require.GreaterOrEqual(t, held, uint64(5))
	a.mu.Lock()
	a.replicas[p] = map[string]*replica{"gw2#1": {caughtUp: true}} // paused from now on
	a.mu.Unlock()
	require.True(t, a.claim(p))
	a.abandon(p)
	require.False(t, a.gw.Serving(p))
	require.Equal(t, held, a.store.LastSeq(p), "the copy given up was dropped")

	done := runTakeOver(t, b, p)
	tn.exchange(t, 1)
	waitDone(t, done)
	req := tn.take(func(m *pb.StreamMsg) bool { return m.GetHandoffRequest() != nil })
	require.Len(t, req, 1, "gw4 did not ask gw1, the holder of the newest copy")
	tn.deliver(req)
	tn.waitFor(t, 1, func(m *pb.StreamMsg) bool { return m.GetHandoff() != nil })
	tn.deliver(tn.take(func(*pb.StreamMsg) bool { return true })) // the catch-up, then the HandOff
	require.Eventually(t, func() bool { return b.gw.Serving(p) }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, held, b.store.LastSeq(p), "gw4 serves the partition without the entries gw1 held")
}

// TestReplicaOfAnotherLogIsCaughtUp is the churn nemesis' doubled and lost
// readings: a gateway that had served a partition (its log ran past what
// was committed) became a replica of the next server without that
// server's catch-up reaching it, and stored the server's commits onto its
// own log, under the newer epoch. Chosen for a take-over, that copy
// replayed its own uncommitted entries where committed ones were. A
// replica now takes replication only from the gateway whose catch-up it
// holds; the commit it refuses fails, and the server catches it up, after
// which its copy is the server's and commits go through.
func TestReplicaOfAnotherLogIsCaughtUp(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 5) // b's entries 4 and 5: an older server's, never committed
	a.serve(p, 1, "take-over")              // epoch 2, from its 3 entries
	require.True(t, a.gw.Serving(p))
	a.mu.Lock()
	a.replicas[p][b.name] = &replica{caughtUp: true, since: time.Now().Add(-time.Minute)} // its catch-up lost
	a.mu.Unlock()
	tn.take(func(*pb.StreamMsg) bool { return true })

	toB := func(m *pb.StreamMsg) bool { return m.From == a.name }
	commit := func() error { return commitEntry4(t, tn, a, b, p) }
	require.ErrorIs(t, commit(), errReplicaRefused, "stored onto a log that is not the server's")
	require.False(t, a.replicaHas(p, b.name, 0), "a replica that refused is not counted as holding the partition")
	e, err := b.epoch(p)
	require.NoError(t, err)
	require.Equal(t, uint64(1), e, "the refused replication did not move the copy's epoch")
	require.Equal(t, uint64(5), b.store.LastSeq(p), "nor its log")

	// The server catches b up: reset, its log, caught up.
	tn.waitFor(t, 1, func(m *pb.StreamMsg) bool { return m.GetCaughtUp() != nil })
	for _, m := range tn.take(toB) {
		m.msg.Addr = "127.0.0.1:1"
		b.onStream(m.msg)
	}
	require.Equal(t, uint64(3), b.store.LastSeq(p), "b's copy is the server's now")
	e, err = b.epoch(p)
	require.NoError(t, err)
	require.Equal(t, uint64(2), e)
	deliverAcks(tn, a)
	require.NoError(t, commit(), "caught up, b takes the server's commits")
	require.Equal(t, uint64(4), b.store.LastSeq(p))
}

// commitEntry4 replicates a group commit of log entry 4 of p from server
// a to replica b, hands b's ack back to a and returns the commit's result.
func commitEntry4(t *testing.T, tn *testNet, a, b *Node, p int) error {
	t.Helper()
	done := a.Replicate([]state.LogGroup{{Partition: p, First: 4, Entries: []*pb.LogEntry{{Device: "dev", Input: "readings", Payload: []byte(`{"seq":4}`)}}}})
	tn.waitFor(t, 1, func(m *pb.StreamMsg) bool { return m.GetLog() != nil })
	for _, m := range tn.take(func(m *pb.StreamMsg) bool { return m.GetLog() != nil }) {
		m.msg.Addr = "127.0.0.1:1" // the harness's addresses are names; where the ack goes does not matter here
		b.onStream(m.msg)
	}
	require.Equal(t, 1, deliverAcks(tn, a))
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the commit never ended")
		return nil
	}
}

// deliverAcks hands the pending stream acks to a; it returns how many.
func deliverAcks(tn *testNet, a *Node) int {
	tn.mu.Lock()
	acks := tn.acks
	tn.acks = nil
	tn.mu.Unlock()
	for _, ack := range acks {
		a.onStream(ack)
	}
	return len(acks)
}

// TestNothingServedBeforeTheJobsAreDeployed: with DeferServing (the
// gateway's setting), a partition handed to a gateway that has not
// deployed its jobs yet is served only once it has: served earlier, the
// partition restored its checkpoint without the jobs' state and replayed
// its log past them (the churn nemesis lost a restarted gateway's window
// rows so).
func TestNothingServedBeforeTheJobsAreDeployed(t *testing.T) {
	const p = 1
	_, a, _ := pairHolding(t, "gw4", 3, 0)
	a.servingOpen, a.openServing = make(chan struct{}), sync.Once{} // as DeferServing leaves it
	a.apply(&pb.StreamMsg{From: "gw4#1", Seq: 1, Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: p, Epoch: 1, LastSeq: 3}}})
	time.Sleep(200 * time.Millisecond)
	require.False(t, a.gw.Serving(p), "served before the jobs were deployed")
	a.StartServing()
	require.Eventually(t, func() bool { return a.gw.Serving(p) }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(2), a.gw.Epoch(p))
}

// TestHandOffShipsTheCopyFirst: a server hands a partition to a gateway
// that is not a replica known to hold all of it (here: never caught up,
// as one that refused the server's replication) only after catching it
// up; and a gateway handed a partition whose copy it does not hold (its
// last position below the sender's) does not serve it. The churn nemesis
// lost a device's readings from the moment such a receiver served from
// its own, shorter copy, numbering positions the sender had used.
func TestHandOffShipsTheCopyFirst(t *testing.T) {
	const p = 1
	tn, a, b := pairHolding(t, "gw4", 3, 0)
	a.serve(p, 1, "take-over")
	require.True(t, a.gw.Serving(p))
	tn.take(func(*pb.StreamMsg) bool { return true })
	require.True(t, a.claim(p))
	a.handOff(p, b.name)
	var kinds []string
	for _, m := range tn.take(func(m *pb.StreamMsg) bool { return m.GetReset_() != nil || m.GetHandoff() != nil }) {
		if m.msg.GetReset_() != nil {
			kinds = append(kinds, "reset")
		} else {
			kinds = append(kinds, "handoff")
		}
	}
	require.Equal(t, []string{"reset", "handoff"}, kinds, "the receiver is caught up before the hand-off")

	// A hand-off whose sender holds more than the receiver: not served.
	b.apply(&pb.StreamMsg{From: a.name, Seq: 1, Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: p, Epoch: 2, LastSeq: 10}}})
	time.Sleep(200 * time.Millisecond)
	require.False(t, b.gw.Serving(p), "served from a copy shorter than the sender's")
}

// TestCatchUpDoesNotResetAnArrivingCopy is the churn nemesis' loss of
// every row of the jobs on partition 0: gw1 handed partition 9 to gw3
// twice (gw3 had asked for it just before the first HandOff arrived), and
// the second hand-off's catch-up reset gw3's copy while gw3 was serving
// from it; gw3 numbered the partition's log from 1 again, and partition 0
// dropped its forwards as applied. A reset for a partition handed here
// and not served yet is now ignored (and the holder does not hand a
// partition twice to one gateway).
func TestCatchUpDoesNotResetAnArrivingCopy(t *testing.T) {
	const p = 1
	_, a, _ := pairHolding(t, "gw4", 3, 0)
	a.servingOpen, a.openServing = make(chan struct{}), sync.Once{} // the serve waits: the reset lands in between
	a.apply(&pb.StreamMsg{From: "gw4#1", Seq: 1, Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: p, Epoch: 1, LastSeq: 3}}})
	a.apply(&pb.StreamMsg{From: "gw4#1", Seq: 2, Body: &pb.StreamMsg_Reset_{Reset_: &pb.ReplReset{Partition: p, Epoch: 1}}})
	require.Equal(t, uint64(3), a.store.LastSeq(p), "the arriving copy was reset")
	a.StartServing()
	require.Eventually(t, func() bool { return a.gw.Serving(p) }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(3), a.store.LastSeq(p))

	a.markTaking(0, inTransitMark, "gw4#1")
	require.True(t, a.handedTo(0, "gw4#1"), "a partition just handed to the asker")
	require.False(t, a.handedTo(0, "gw5#1"))
}

// TestPausedServerCommitsNothingAfterATakeOver (C16): gw1 served
// partition 1 with gw3 as its caught-up replica and was paused; gw4, the
// owner now, took the partition over at epoch 3 from its own copy while
// gw3 still held gw1's catch-up at epoch 2. gw1, woken and still serving
// in its own eyes, replicated a commit to gw3 before gw4 caught gw3 up:
// gw3 stored it, gw1 acknowledged its publishers, and gw4's catch-up then
// dropped what nobody serving held. Every gateway a take-over asked now
// promises its epoch before it serves, and refuses what comes from an
// older one.
func TestPausedServerCommitsNothingAfterATakeOver(t *testing.T) {
	const p = 1
	tn := newTestNet()
	a := newTestNode(t, tn, "gw1", 2)
	b := newTestNode(t, tn, "gw4", 2)
	c := newTestNode(t, tn, "gw3", 2)
	meet(a, b, c)
	holdPartition(t, a, p, 1, 3)
	a.serve(p, 1, "take-over") // epoch 2
	require.True(t, a.gw.Serving(p))
	holdPartition(t, b, p, 2, 3)
	holdPartition(t, c, p, 2, 3)
	a.mu.Lock()
	a.replicas[p][c.name] = &replica{caughtUp: true, since: time.Now()}
	a.mu.Unlock()
	c.mu.Lock()
	c.holding[p], c.caughtUp[p] = a.name, true
	c.mu.Unlock()
	tn.take(func(*pb.StreamMsg) bool { return true })

	// gw1 is paused: gw4 and gw3 see it leave.
	for _, n := range []*Node{b, c} {
		n.mu.Lock()
		delete(n.view, a.name)
		n.mu.Unlock()
	}
	done := runTakeOver(t, b, p)
	tn.exchange(t, 1)
	waitDone(t, done)
	require.True(t, b.gw.Serving(p))
	require.Equal(t, uint64(3), b.gw.Epoch(p))

	// gw1 wakes before gw4 catches gw3 up.
	require.ErrorIs(t, commitEntry4(t, tn, a, c, p), errReplicaRefused, "gw1 acknowledged a commit after gw4 took the partition over")
	require.Equal(t, uint64(3), c.store.LastSeq(p), "gw3 stored gw1's commit")

	// Nor may gw1 hand the partition to gw3 now: gw3 would serve it at
	// epoch 3 beside gw4.
	c.apply(&pb.StreamMsg{From: a.name, Body: &pb.StreamMsg_Handoff{Handoff: &pb.HandOff{Partition: p, Epoch: 2, LastSeq: 3}}})
	c.handlers.Wait() // the serve a HandOff starts, if it started one
	require.False(t, c.gw.Serving(p), "gw3 served a hand-off from before the take-over it promised an epoch to")

	// gw4's own catch-up, at the new epoch, goes through.
	c.apply(&pb.StreamMsg{From: b.name, Body: &pb.StreamMsg_Reset_{Reset_: &pb.ReplReset{Partition: p, Epoch: 3}}})
	c.mu.Lock()
	holder := c.holding[p]
	c.mu.Unlock()
	require.Equal(t, b.name, holder)
}

// TestEpochPromises: what a gateway promises a take-over, and what it
// refuses to.
func TestEpochPromises(t *testing.T) {
	const p = 1
	tn := newTestNet()
	a := newTestNode(t, tn, "gw1", 2)
	holdPartition(t, a, p, 2, 3)

	ok, _ := a.promiseEpoch(p, 2, "gw4#1", "")
	require.False(t, ok, "promised the epoch of the copy it holds")
	ok, _ = a.promiseEpoch(p, 3, "gw4#1", "")
	require.True(t, ok)
	ok, _ = a.promiseEpoch(p, 3, "gw4#1", "")
	require.True(t, ok, "the same take-over asking again")
	ok, promised := a.promiseEpoch(p, 3, "gw5#1", "")
	require.False(t, ok, "one epoch promised to two take-overs")
	require.Equal(t, uint64(3), promised)
	ok, _ = a.promiseEpoch(p, 4, "gw5#1", "")
	require.True(t, ok, "a newer epoch")
	e, to, err := a.store.Promised(p)
	require.NoError(t, err)
	require.Equal(t, uint64(4), e, "the promise is stored: it holds across a restart")
	require.Equal(t, "gw5#1", to)
	require.True(t, a.olderThanPromised(p, 3, "gw4#1"))
	require.False(t, a.olderThanPromised(p, 4, "gw5#1"))

	// A gateway serving the partition promises nothing.
	a.serve(p, 4, "take-over")
	require.True(t, a.gw.Serving(p))
	ok, _ = a.promiseEpoch(p, 9, "gw6#1", "")
	require.False(t, ok, "promised a partition it serves")
}
