package cluster

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// An in-memory cluster for fast tests of replication, hand-off and
// take-over: N nodes, each a real clustered actors.Gateway over a real
// Pebble store in t.TempDir(), wired through memNet instead of protoactor
// remote (two remotes in one process race on a gRPC global) and gossip.
// What runs is the production code: streams with their acks and resends,
// the cluster actors' handlers (one goroutine per actor, in order, as a
// mailbox), the heartbeats and the loop's rounds (Node.step). Only two
// things are the harness's: the view each node gets (setView, from the
// nodes alive and reachable, with their current metadata, as gossip would
// give it) and the clock of the resends (advance).
//
// memNet routes what a node sends (Node.post, through the sender seam) to
// the receiving node's actor. A rule may drop a message or delay it
// (hold it until release); a partition cuts two nodes off from each
// other both ways.

// memNet is the in-memory switch.
type memNet struct {
	mu    sync.Mutex
	ends  map[string]*memEnd // by remote address
	cut   map[[2]string]bool // address pairs that cannot reach each other
	rule  func(m envelope) verdict
	held  []envelope
	drops atomic.Int64
}

// envelope is one message on its way.
type envelope struct {
	from, to string // remote addresses
	actor    string // nodeActor or heartbeatActor
	msg      any
}

// verdict is what a rule does with a message.
type verdict int

const (
	deliver verdict = iota
	drop
	delay // held until release
)

func newMemNet() *memNet {
	return &memNet{ends: map[string]*memEnd{}, cut: map[[2]string]bool{}}
}

// setRule makes rule decide every message from now on (nil: deliver all).
func (mn *memNet) setRule(rule func(m envelope) verdict) {
	mn.mu.Lock()
	mn.rule = rule
	mn.mu.Unlock()
}

// partition cuts a and b off from each other (both ways) until heal.
func (mn *memNet) partition(a, b string) {
	mn.mu.Lock()
	mn.cut[[2]string{a, b}], mn.cut[[2]string{b, a}] = true, true
	mn.mu.Unlock()
}

func (mn *memNet) heal() {
	mn.mu.Lock()
	mn.cut = map[[2]string]bool{}
	mn.mu.Unlock()
}

// reachable reports whether a and b can reach each other.
func (mn *memNet) reachable(a, b string) bool {
	mn.mu.Lock()
	defer mn.mu.Unlock()
	return !mn.cut[[2]string{a, b}]
}

// release delivers the held messages that match, in the order sent.
func (mn *memNet) release(match func(m envelope) bool) int {
	mn.mu.Lock()
	var out, keep []envelope
	for _, m := range mn.held {
		if match(m) {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	mn.held = keep
	mn.mu.Unlock()
	for _, m := range out {
		mn.deliver(m)
	}
	return len(out)
}

func (mn *memNet) route(m envelope) {
	mn.mu.Lock()
	v := deliver
	switch {
	case mn.cut[[2]string{m.from, m.to}] || mn.ends[m.to] == nil:
		v = drop
	case mn.rule != nil:
		v = mn.rule(m)
	}
	if v == delay {
		mn.held = append(mn.held, m)
	}
	mn.mu.Unlock()
	switch v {
	case drop:
		mn.drops.Add(1)
	case deliver:
		mn.deliver(m)
	}
}

func (mn *memNet) deliver(m envelope) {
	mn.mu.Lock()
	e := mn.ends[m.to]
	mn.mu.Unlock()
	if e == nil {
		mn.drops.Add(1)
		return
	}
	if b := e.boxes[m.actor]; b != nil {
		b.put(m.msg)
	}
}

// attach makes n reachable at its stream address; its two actors run
// until detach.
func (mn *memNet) attach(n *Node) *memEnd {
	e := &memEnd{net: mn, addr: n.st.addr, boxes: map[string]*mailbox{
		nodeActor:      newMailbox(n.onStream),
		heartbeatActor: newMailbox(n.onHeartbeat),
	}}
	n.out = e
	mn.mu.Lock()
	mn.ends[e.addr] = e
	mn.mu.Unlock()
	return e
}

// detach takes e off the switch (what is sent to it from now on is lost)
// and stops its actors.
func (mn *memNet) detach(e *memEnd) {
	mn.mu.Lock()
	delete(mn.ends, e.addr)
	mn.mu.Unlock()
	for _, b := range e.boxes {
		b.stop()
	}
}

// memEnd is a node's side of the switch: its sender and its actors.
type memEnd struct {
	net   *memNet
	addr  string
	boxes map[string]*mailbox
}

var _ sender = (*memEnd)(nil)

func (e *memEnd) Send(pid *actor.PID, msg any) {
	e.net.route(envelope{from: e.addr, to: pid.Address, actor: pid.Id, msg: msg})
}

// mailbox hands messages to one handler on one goroutine, in order.
type mailbox struct {
	mu     sync.Mutex
	queue  []any
	wake   chan struct{}
	done   chan struct{}
	exited chan struct{}
}

func newMailbox(handle func(any)) *mailbox {
	b := &mailbox{wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(b.exited)
		for {
			select {
			case <-b.done:
				return
			case <-b.wake:
			}
			for {
				b.mu.Lock()
				if len(b.queue) == 0 {
					b.mu.Unlock()
					break
				}
				m := b.queue[0]
				b.queue = b.queue[1:]
				b.mu.Unlock()
				handle(m)
			}
		}
	}()
	return b
}

func (b *mailbox) put(m any) {
	b.mu.Lock()
	b.queue = append(b.queue, m)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *mailbox) stop() {
	close(b.done)
	<-b.exited
}

// memCluster is N gateways wired through a memNet, each with the test
// job deployed; a driver goroutine runs the loop's rounds.
type memCluster struct {
	t     *testing.T
	net   *memNet
	cfg   memConfig
	mu    sync.Mutex // guards nodes
	nodes []*memNode
	clock atomic.Int64 // added to the resend clock (advance)
	stop  chan struct{}
	done  chan struct{}
	sent  map[string]int // device -> events ingested (test goroutine only)
	seq   int
}

type memConfig struct {
	gateways   int
	partitions int
	replicas   int
	quorum     string
	// checkpoint is the gateways' checkpoint interval (default 100 ms);
	// safe checkpoints are promoted every half of it.
	checkpoint time.Duration
}

// memPorts numbers the in-memory addresses.
var memPorts atomic.Int32

// memNode is one incarnation of a gateway.
type memNode struct {
	n    *Node
	gw   *actors.Gateway
	st   *state.Store
	outs *actors.Outputs
	end  *memEnd
	rows string // the output file
	dead bool
}

// memJobYAML passes every reading through, so a reading lost or applied
// twice shows in the rows; the device counters (checkpointed with their
// partition) count what was applied.
const memJobYAML = `name: pass
query: |
  SELECT deviceId, seq INTO out FROM readings
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs:
  - {name: out, file: {path: %q}}
`

// newMemCluster starts cfg.gateways gateways gw1..gwN (fast timers) that
// all see each other, and waits until every partition is served and
// every replica caught up.
func newMemCluster(t *testing.T, cfg memConfig) *memCluster {
	t.Helper()
	// Registered first, so it runs after every other cleanup.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	c := &memCluster{t: t, net: newMemNet(), cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}), sent: map[string]int{}}
	for i := 1; i <= cfg.gateways; i++ {
		c.start(fmt.Sprintf("gw%d", i), t.TempDir())
	}
	go c.drive()
	t.Cleanup(c.close)
	c.waitSettled()
	return c
}

// start starts a gateway on the store in dir (a restart when dir holds
// one) and attaches it.
func (c *memCluster) start(gateway, dir string) *memNode {
	t := c.t
	t.Helper()
	logger := discardLogger()
	if os.Getenv("MEMNET_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("gw", gateway)
	}
	st, err := state.Open(filepath.Join(dir, "state"), state.Config{Partitions: c.cfg.partitions, Logger: logger})
	require.NoError(t, err)
	outs := actors.NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	gw := actors.New(actors.Config{Partitions: c.cfg.partitions, Store: st, Logger: logger, Clustered: true,
		CheckpointInterval: cmp.Or(c.cfg.checkpoint, 100*time.Millisecond)}, outs, nil)
	n := newNode(NodeConfig{Gateway: gateway, Replicas: c.cfg.replicas, Quorum: c.cfg.quorum, MinorityInput: MinorityRefuse,
		Lease: 2 * time.Second, HandOffWait: 2 * time.Second, MaxMessageBytes: DefaultMaxMessageBytes, Logger: logger}, gw)
	n.ml = &Membership{changes: make(chan struct{}, 1)}
	// An address per incarnation (the checks want host:port): nothing
	// sent to an earlier one reaches this one.
	addr := fmt.Sprintf("127.0.0.1:%d", memPorts.Add(1))
	n.st = streams{from: n.name, addr: addr, post: n.post, out: map[string]*outStream{}}
	n.startedAt = time.Now().Add(-2 * startGrace)
	n.rejoining.Store(true) // no gossip to rejoin through
	n.gossipOf, n.savedAddr = map[string]string{}, map[string]string{}
	rows := filepath.Join(dir, fmt.Sprintf("rows-%s.jsonl", n.name[len(gateway)+1:]))
	job, err := config.ParseJob("pass.yaml", []byte(fmt.Sprintf(memJobYAML, rows)))
	require.NoError(t, err)
	require.NoError(t, outs.Configure(job))
	require.NoError(t, gw.SetCluster(n))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, gw.Deploy(ctx, job))
	require.NoError(t, gw.Recover(ctx))
	m := &memNode{n: n, gw: gw, st: st, outs: outs, rows: rows}
	m.end = c.net.attach(n)
	n.wg.Add(1)
	go n.heartbeats()
	c.mu.Lock()
	c.nodes = append(c.nodes, m)
	c.mu.Unlock()
	return m
}

// drive runs the loop's rounds every 20 ms: each live node gets the
// view gossip would give it, then runs one step.
func (c *memCluster) drive() {
	defer close(c.done)
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		live := c.live()
		for _, m := range live {
			var members []Member
			for _, o := range live {
				if o == m || c.net.reachable(m.end.addr, o.end.addr) {
					members = append(members, Member{Name: o.n.name, Meta: o.n.meta(o.end.addr)})
				}
			}
			m.n.setView(members)
			m.n.step(time.Now().Add(time.Duration(c.clock.Load())))
		}
	}
}

// advance moves the resend clock on by d: what waits for an ack is sent
// again on the next round when d >= resendAfter.
func (c *memCluster) advance(d time.Duration) { c.clock.Add(int64(d)) }

func (c *memCluster) live() []*memNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*memNode
	for _, m := range c.nodes {
		if !m.dead {
			out = append(out, m)
		}
	}
	return out
}

// node is the live incarnation of a gateway.
func (c *memCluster) node(gateway string) *memNode {
	for _, m := range c.live() {
		if m.n.cfg.Gateway == gateway {
			return m
		}
	}
	c.t.Fatalf("no live gateway %s", gateway)
	return nil
}

// kill stops a gateway as a crash does for the others: it leaves their
// views at the next round and nothing it sent is delivered from now on.
// Its store and rows stay (restart).
func (c *memCluster) kill(gateway string) string {
	m := c.node(gateway)
	c.mu.Lock()
	m.dead = true
	c.mu.Unlock()
	c.net.detach(m.end)
	c.stopNode(m)
	return filepath.Dir(m.rows)
}

// stopNode stops a node that is off the switch and its gateway: what the
// node started ends first, so the gateway has no caller left.
func (c *memCluster) stopNode(m *memNode) {
	t := c.t
	n := m.n
	n.stopped.Store(true)
	n.AbortForwards()
	close(n.stop)
	n.wg.Wait()
	n.closeStreams()
	require.Eventually(t, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, b := range n.busy {
			if b {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "a change of a partition did not end")
	n.handlers.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, m.gw.Close(ctx))
	require.NoError(t, m.outs.Close())
	require.NoError(t, m.st.Close())
}

func (c *memCluster) close() {
	close(c.stop)
	<-c.done
	for _, m := range c.live() {
		c.net.detach(m.end)
	}
	for _, m := range c.live() {
		c.stopNode(m)
	}
}

// waitSettled waits until every partition is served by exactly one live
// gateway and every replica its server has is caught up.
func (c *memCluster) waitSettled() {
	c.t.Helper()
	c.eventually("every partition served once, its replicas caught up", func() bool {
		for p := 0; p < c.cfg.partitions; p++ {
			servers := 0
			for _, m := range c.live() {
				if !m.gw.Serving(p) {
					continue
				}
				servers++
				m.n.mu.Lock()
				want := min(c.cfg.replicas, len(c.live())) - 1
				caught := 0
				for _, r := range m.n.replicas[p] {
					if r.caughtUp {
						caught++
					}
				}
				m.n.mu.Unlock()
				if caught < want {
					return false
				}
			}
			if servers != 1 {
				return false
			}
		}
		return true
	})
}

func (c *memCluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	require.Eventually(c.t, cond, 20*time.Second, 10*time.Millisecond, what)
}

// server is the live gateway serving p ("" when none does).
func (c *memCluster) server(p int) *memNode {
	for _, m := range c.live() {
		if m.gw.Serving(p) {
			return m
		}
	}
	return nil
}

// ingest publishes k readings through gateway at, in order, each on its
// device's topic; they are acknowledged (logged and replicated) when it
// returns.
func (c *memCluster) ingest(at string, k int) {
	c.t.Helper()
	require.NoError(c.t, c.publish(c.node(at), k))
}

// publish is ingest for any goroutine (it reports instead of failing).
func (c *memCluster) publish(m *memNode, k int) error {
	for range k {
		dev := fmt.Sprintf("dev-%02d", c.seq%16)
		payload := fmt.Sprintf(`{"deviceId":%q,"seq":%d}`, dev, c.seq)
		took, err := m.gw.IngestTopic("devices/"+dev+"/messages/events", []byte(payload))
		if err == nil && took != 1 {
			err = fmt.Errorf("reading %d taken by %d inputs", c.seq, took)
		}
		if err != nil {
			return err
		}
		c.sent[dev]++
		c.seq++
	}
	return nil
}

// checkRows reads every output file ever written (every gateway and
// incarnation) and fails on a reading with no row (lost) or with rows
// under two ids (applied twice). A row repeated under its own id is a
// re-emission after a take-over, which receivers drop (C6).
func (c *memCluster) checkRows() {
	t := c.t
	t.Helper()
	c.eventually("every reading's row delivered", func() bool { return len(c.rowIDs()) >= c.seq })
	ids := c.rowIDs()
	lost, doubled := 0, 0
	for s := range c.seq {
		switch len(ids[s]) {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	require.Zero(t, lost, "readings without a row (of %d)", c.seq)
	require.Zero(t, doubled, "readings with rows under two ids (of %d)", c.seq)
	require.Len(t, ids, c.seq, "rows of readings never sent")
}

// rowIDs maps each reading's seq to the distinct row ids it has.
func (c *memCluster) rowIDs() map[int]map[string]bool {
	c.t.Helper()
	out := map[int]map[string]bool{}
	c.mu.Lock()
	nodes := append([]*memNode(nil), c.nodes...)
	c.mu.Unlock()
	for _, m := range nodes {
		f, err := os.Open(m.rows)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(c.t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var row struct {
				ID  string `json:"_id"`
				Seq *int   `json:"seq"`
			}
			if json.Unmarshal(sc.Bytes(), &row) != nil || row.Seq == nil {
				continue // a line being written
			}
			if out[*row.Seq] == nil {
				out[*row.Seq] = map[string]bool{}
			}
			out[*row.Seq][row.ID] = true
		}
		f.Close()
	}
	return out
}

// checkDevices compares every device's message counter, from the
// partition that serves it, with the readings sent: the state a take-over
// restores from a checkpoint and the log after it.
func (c *memCluster) checkDevices() {
	t := c.t
	t.Helper()
	got := map[string]uint64{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range c.live() {
		devs, err := m.gw.Devices(ctx)
		require.NoError(t, err)
		for _, d := range devs {
			require.NotContains(t, got, d.ID, "device %s on two gateways", d.ID)
			got[d.ID] = d.Messages
		}
	}
	want := map[string]uint64{}
	for d, k := range c.sent {
		want[d] = uint64(k)
	}
	require.Equal(t, want, got, "device counters (readings applied per device)")
}

// safeThrough is the through position of p's safe checkpoint in m's store.
func (m *memNode) safeThrough(t *testing.T, p int) uint64 {
	sc, err := m.st.LoadSafeCheckpoint(p)
	require.NoError(t, err)
	return sc.GetThrough()
}

func isReplLog(m envelope) bool {
	s, ok := m.msg.(*pb.StreamMsg)
	return ok && s.GetLog() != nil
}
