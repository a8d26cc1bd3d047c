package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// drainSettle is how long a draining gateway waits, after gossiping that
// it drains, before it hands partitions off: the others must place
// partitions without it first, or they would hand them straight back.
const drainSettle = 500 * time.Millisecond

// nodeActor is the well-known name of every gateway's cluster actor.
const nodeActor = "millstream-cluster"

// heartbeatActor takes the peers' heartbeats on its own mailbox: behind
// the node actor's replication writes they could arrive later than the
// lease, and the gateway would fence itself under load.
const heartbeatActor = "millstream-heartbeat"

// Split-brain policies (NodeConfig.Quorum).
const (
	QuorumMajority = "majority"
	QuorumNone     = "none"
)

// NodeConfig configures a clustered gateway.
type NodeConfig struct {
	// Gateway is the gateway's name, unique in the cluster and stable
	// across restarts (placement ranks by it).
	Gateway string
	// Membership: gossip address, seeds, key and failure detection. Its
	// Name and Meta are set by the node.
	Membership Config
	// RemoteAddr is the protoactor remote address (host:port; port 0 picks
	// one) that forwarded input and replication use.
	RemoteAddr string
	// HTTPAddr is the admin API address, gossiped for `cluster status`.
	HTTPAddr string
	Version  string
	// Replicas is how many gateways hold each partition, owner included
	// (default 2).
	Replicas int
	// Quorum: "majority" (default): a gateway serves partitions only while
	// it hears from a majority of the gateways it has known; "none": always.
	Quorum string
	// MinorityInput: what a gateway without a majority does with input:
	// "log" (default) parks it on its own disk, acknowledges it and
	// forwards it once it hears from a majority again; "refuse" leaves it
	// unacknowledged (publishers resend).
	MinorityInput string
	// Lease: how long a gateway may go without hearing from a majority
	// before it stops delivering and serving (default: 3 probe intervals,
	// at least 1 s; keep it below the failure-detection time).
	Lease time.Duration
	// HandOffWait bounds how long a planned hand-off waits for the
	// partition's rows to leave the outbox (default 10 s); after it the
	// next owner re-emits the rows since the last safe checkpoint.
	HandOffWait time.Duration
	// TLS, if set, makes the link between gateways mutual TLS with the
	// cluster CA, and every message's sender must be the gateway its
	// peer's certificate names (link.go). Nil: plain gRPC, for loopback.
	TLS *LinkTLS
	// MaxMessageBytes bounds one message between gateways (default
	// DefaultMaxMessageBytes). It must hold the largest event the gateway
	// takes (max_payload_bytes) and a safe checkpoint; every gateway of a
	// cluster should use the same.
	MaxMessageBytes int
	// OnJob prepares a job another gateway deployed before it is deployed
	// here (the gateway's outputs configure their sinks).
	OnJob func(*pb.Job) error
	// DeferServing keeps the node from serving any partition until
	// StartServing: the gateway deploys its jobs first. A partition
	// served before a job was deployed would restore its checkpoint
	// without that job's state and replay its log past it, and the job
	// would miss every event since the checkpoint (the churn nemesis: a
	// gateway restarted took a hand-off in the milliseconds before its
	// configured jobs were deployed).
	DeferServing bool
	// Relay, if set, makes this gateway take the MQTT output rows the
	// others relay (relay.go, C15) and publish them through it, and says
	// so in its gossiped metadata. Set it, and the outputs' relay
	// (actors.Outputs.SetRelay with the node), when MQTT outputs publish
	// on the embedded broker. Nil: no rows are relayed to it.
	Relay RelayPublisher
	// RelayQueueBytes bounds the relayed rows waiting for one other
	// gateway's acknowledgement, and those received waiting to be
	// published here (default DefaultRelayQueueBytes).
	RelayQueueBytes int64
	Logger          *slog.Logger
}

// Node is a gateway's cluster layer: membership, placement, forwarding of
// input to the gateway serving its partition, replication, hand-off and
// fail-over. It implements actors.ClusterLink.
type Node struct {
	cfg    NodeConfig
	gw     Gateway
	store  *state.Store
	name   string // gateway#incarnation
	log    *slog.Logger
	ml     *Membership
	system *actor.ActorSystem
	out    sender // what post sends through: system.Root, or a test's switch
	remote *remote.Remote
	parts  int
	rej    *rejections // messages refused (reject.go)
	guard  *linkGuard
	maxMsg int // largest stream message (NodeConfig.MaxMessageBytes)
	// changes summarises the per-partition changes (summary.go).
	changes *partitionLog
	// oversizeLogAt: when a message too large to send was last logged.
	oversizeLogAt atomic.Int64
	relay         *relayState // cluster-wide outputs (relay.go)

	st streams // outgoing streams; st.mu also orders replication (catch-up vs commits)

	mu        sync.Mutex           // guards what follows
	view      map[string]Member    // live members by member name (self included)
	bases     map[string]string    // gateway name -> newest live member name
	known     map[string]bool      // gateway names ever seen (quorum)
	contact   map[string]time.Time // last message from each member
	joinedAt  map[string]time.Time // when each member entered the view
	in        map[string]*inStream
	replicas  []map[string]*replica // per partition, served here: member -> state
	holding   []string              // per partition: member whose stream this replica follows ("" none)
	caughtUp  []bool
	fwd       []*forwarder
	requests  map[uint64]chan statusAnswer
	reqID     uint64
	takingAt  []time.Time  // per partition: last take-over attempt
	taking    []takingMark // per partition: holdings says this gateway takes it over (C8)
	busy      []bool       // per partition: a hand-off, give-up, take-over or serve is running (claim)
	arriving  []bool       // per partition: a HandOff arrived and its serve has not ended (a catch-up then must not reset the copy)
	promised  []promise    // per partition: the highest epoch promised to a take-over (C16; takeover.go)
	promiseMu sync.Mutex   // serializes promises (checked, stored, then set)
	jobVer    map[string]jobVersion
	jobLog    map[string]*pb.JobUpdate
	forgotten map[string]bool // gateways an operator forgot (C13)
	jobMu     sync.Mutex      // serializes job updates from other gateways
	viewSince time.Time
	startedAt time.Time // for startGrace
	draining  bool
	tbl       Table    // placement of tblNames (table)
	tblNames  []string // sorted gateway names placed
	fwdClosed bool

	quorumAt  atomic.Int64 // unix ns of the last time a majority was heard
	metaDirty atomic.Bool
	// fenceLatch: the lease lapsed; set until every partition served then
	// has been given up, however soon answers come back (C9).
	fenceLatch atomic.Bool
	epochs     []atomic.Uint64 // cache of the store's epochs (0: not read yet)
	// announceDrain: the metadata says this gateway drains (before it
	// hands off: drainSettle).
	announceDrain atomic.Bool
	stopped       atomic.Bool
	stop          chan struct{}
	servingOpen   chan struct{} // closed once the node may serve (StartServing)
	openServing   sync.Once
	wg            sync.WaitGroup
	// handlers: goroutines handling messages from other gateways (goSafe).
	handlers sync.WaitGroup

	iso       *isolation        // fault injection (fault.go); nil in production
	gossipOf  map[string]string // gossip address last seen per gateway (guarded by mu; rejoin)
	rejoining atomic.Bool
	rejoinAt  time.Time // guarded by mu
	// savedAddr: the gossip address stored per known gateway (guarded by
	// mu), so a restarted gateway reaches the others without its seeds.
	savedAddr map[string]string
	// awaitingSeed: no seed answered at start and no other gateway has
	// been seen since. Such a gateway serves nothing (a fresh one would
	// count itself a majority of one) and keeps trying the seeds and the
	// gateways its store knows (issue 11 D).
	awaitingSeed atomic.Bool

	failovers, handoffs, forwarded, refusedFwd atomic.Uint64
	// parkedIn counts events parked while cut off; parkedNow is how many
	// wait in the store to be forwarded (park.go).
	parkedIn  atomic.Uint64
	parkedNow atomic.Int64
}

type replica struct {
	caughtUp bool
	acked    uint64    // last log seq it acknowledged
	since    time.Time // when its catch-up was sent
}

type jobVersion struct {
	version int64
	origin  string
}

// forwarder sends one partition's forwarded events, one batch at a time
// (C7).
type forwarder struct {
	// order is held from numbering events to queueing them, so that the
	// queue stays in origin-seq order while events are parked (park.go).
	order    sync.Mutex
	queue    []*pb.LogEntry // guarded by Node.mu, as what follows
	dones    []func(error)
	parked   []bool // queue[i] is parked in the store (its publisher was acknowledged)
	oseq     uint64
	inflight *fwdBatch
	retryAt  time.Time
	// busy mirrors inflight != nil || len(queue) > 0 for Forwarding,
	// which partitions ask on every flush without taking Node.mu.
	busy atomic.Bool
}

// noteBusy updates busy after queue or inflight changed (Node.mu held).
func (f *forwarder) noteBusy() { f.busy.Store(f.inflight != nil || len(f.queue) > 0) }

type fwdBatch struct {
	id      uint64
	entries []*pb.LogEntry
	dones   []func(error)
	parked  []bool
	to      string
	sentAt  time.Time
}

// Start joins the cluster and attaches the node to a durable gateway
// (before its Recover). The gateway serves no partition until the node
// has settled which ones are its own.
func Start(ctx context.Context, cfg NodeConfig, gw Gateway) (*Node, error) {
	if cfg.Gateway == "" || strings.Contains(cfg.Gateway, "#") {
		return nil, fmt.Errorf("cluster: gateway name %q: required, without '#'", cfg.Gateway)
	}
	switch cfg.MinorityInput {
	case "":
		cfg.MinorityInput = MinorityLog
	case MinorityLog, MinorityRefuse:
	default:
		return nil, fmt.Errorf("cluster: minority_input %q: log or refuse", cfg.MinorityInput)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 2
	}
	switch cfg.Quorum {
	case "":
		cfg.Quorum = QuorumMajority
	case QuorumMajority, QuorumNone:
	default:
		return nil, fmt.Errorf("cluster: quorum %q: majority or none", cfg.Quorum)
	}
	if cfg.Lease <= 0 {
		probe := cfg.Membership.ProbeInterval
		if probe <= 0 {
			probe = time.Second
		}
		cfg.Lease = max(3*probe, time.Second)
	}
	if cfg.HandOffWait <= 0 {
		cfg.HandOffWait = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.RelayQueueBytes <= 0 {
		cfg.RelayQueueBytes = DefaultRelayQueueBytes
	}
	if gw.Store() == nil {
		return nil, errors.New("cluster: a clustered gateway needs durable state (durability.disabled is set)")
	}
	n := newNode(cfg, gw)
	// quorumAt stays 0 (fenced) until the view shows a majority: a gateway
	// that restarts alone must not serve from its own store what others
	// may hold newer (it did, for one lease, and lost rows).
	known, err := n.store.Gateways()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for _, g := range known {
		n.known[g] = true
	}
	forgotten, err := n.store.Forgotten()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for _, g := range forgotten {
		n.forgotten[g] = true
	}
	n.gossipOf = map[string]string{}
	if n.savedAddr, err = n.store.GatewayAddrs(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for g, a := range n.savedAddr {
		if g != cfg.Gateway && n.known[g] {
			n.gossipOf[g] = a
		}
	}
	n.iso = newIsolation(cfg.Gateway)
	if on, _ := n.iso.check(); on {
		n.log.Warn("fault injection: this gateway starts isolated from the cluster", "switch", n.iso.path)
	}
	if err := n.loadParked(); err != nil {
		return nil, err
	}
	if err := n.loadJobUpdates(); err != nil {
		return nil, err
	}

	// Remote first: its address goes into the gossiped metadata.
	host, port, err := splitHostPort(cfg.RemoteAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: remote address %q: %w", cfg.RemoteAddr, err)
	}
	if port == 0 {
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	// protoactor logs through ours (its own handler writes colored text
	// to stderr), at warning and above: its info lines are per connection.
	plog := slog.New(levelHandler{cfg.Logger.Handler(), slog.LevelWarn}).With("component", "actor")
	n.system = actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog })))
	opts, err := n.linkOptions()
	if err != nil {
		return nil, err
	}
	n.out = n.system.Root
	n.remote = remote.NewRemote(n.system, remote.Configure(host, port, opts...))
	if err := startRemote(n.remote); err != nil {
		return nil, fmt.Errorf("cluster: remote address %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), err)
	}
	n.st = streams{from: n.name, addr: n.system.Address(), post: n.post, out: map[string]*outStream{}}
	if _, err := n.system.Root.SpawnNamed(actor.PropsFromFunc(n.receive), nodeActor); err != nil {
		n.remote.Shutdown(false)
		return nil, fmt.Errorf("cluster: start the cluster actor: %w", err)
	}
	if _, err := n.system.Root.SpawnNamed(actor.PropsFromFunc(n.heartbeat), heartbeatActor); err != nil {
		n.remote.Shutdown(false)
		return nil, fmt.Errorf("cluster: start the heartbeat actor: %w", err)
	}
	if err := gw.SetCluster(n); err != nil {
		n.remote.Shutdown(false)
		return nil, err
	}

	mcfg := cfg.Membership
	mcfg.Name = n.name
	mcfg.Logger = cfg.Logger
	mcfg.iso = n.iso
	mcfg.Admit = n.admit
	mcfg.watch = n.guard
	mcfg.Meta = n.meta(net.JoinHostPort(host, strconv.Itoa(port)))
	// A seed that is down must not keep a gateway from starting: it starts
	// alone, serves nothing, and joins whichever member answers first.
	mcfg.StartAlone = true
	if n.ml, err = Join(ctx, mcfg); err != nil {
		n.remote.Shutdown(false)
		return nil, err
	}
	if err := n.ml.SeedError(); err != nil {
		n.awaitingSeed.Store(true)
		n.log.Warn("no seed answered; the gateway serves nothing until it reaches the cluster, and tries the seeds and the gateways it knows every 2 s",
			"error", err, "known_addresses", len(n.gossipOf))
	}
	n.refreshView()
	n.wg.Add(4)
	go n.loop()
	go n.heartbeats()
	go n.metaGossiper()
	go n.relayPublisher()
	n.log.Info("joined the cluster", "member", n.name, "gossip", n.ml.Addr(), "remote", net.JoinHostPort(host, strconv.Itoa(port)),
		"members", len(n.ml.Names()), "replicas", cfg.Replicas, "quorum", cfg.Quorum, "minority_input", cfg.MinorityInput)
	return n, nil
}

// linkOptions configures protoactor remote: message size limits, the
// guard (link.go) and, with NodeConfig.TLS, mutual TLS.
func (n *Node) linkOptions() ([]remote.ConfigOption, error) {
	limit := grpcLimit(n.maxMsg)
	n.guard = newLinkGuard(n.cfg.TLS != nil, n.rej, n.maxMsg)
	server := []grpc.ServerOption{grpc.MaxRecvMsgSize(limit), grpc.MaxSendMsgSize(limit),
		grpc.ChainStreamInterceptor(n.guard.stream), grpc.ChainUnaryInterceptor(n.guard.unary)}
	dial := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit))}
	if n.cfg.TLS != nil {
		st, ct, err := loadLinkTLS(n.cfg.TLS, n.cfg.Gateway, n.rej)
		if err != nil {
			return nil, err
		}
		server = append(server, grpc.Creds(credentials.NewTLS(st)))
		dial = append(dial, grpc.WithTransportCredentials(&linkCreds{TransportCredentials: credentials.NewTLS(ct), g: n.guard}))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	return []remote.ConfigOption{remote.WithServerOptions(server...), remote.WithDialOptions(dial...),
		remote.WithEndpointWriterBatchSize(linkWriterBatch)}, nil
}

// startRemote starts protoactor remote, which panics when it cannot
// listen.
func startRemote(r *remote.Remote) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	r.Start()
	return nil
}

// StartServing lets the node serve partitions (NodeConfig.DeferServing):
// call it once the gateway's jobs are deployed. Hand-offs received and
// take-overs decided before wait for it.
func (n *Node) StartServing() { n.openServing.Do(func() { close(n.servingOpen) }) }

// newNode makes a node's state, before anything starts (cfg has its
// defaults); Start joins it.
func newNode(cfg NodeConfig, gw Gateway) *Node {
	n := &Node{cfg: cfg, gw: gw, store: gw.Store(), parts: gw.Partitions(), log: cfg.Logger.With("component", "cluster"),
		name: cfg.Gateway + "#" + strconv.FormatInt(time.Now().UnixNano(), 36),
		view: map[string]Member{}, bases: map[string]string{}, known: map[string]bool{}, contact: map[string]time.Time{}, joinedAt: map[string]time.Time{},
		in: map[string]*inStream{}, requests: map[uint64]chan statusAnswer{}, jobVer: map[string]jobVersion{}, jobLog: map[string]*pb.JobUpdate{}, forgotten: map[string]bool{}, stop: make(chan struct{}),
		servingOpen: make(chan struct{}), startedAt: time.Now(), maxMsg: cfg.MaxMessageBytes}
	if !cfg.DeferServing {
		n.StartServing()
	}
	n.rej = newRejections(n.log)
	n.relay = newRelayState()
	n.changes = newPartitionLog(n.log)
	n.replicas = make([]map[string]*replica, n.parts)
	n.holding = make([]string, n.parts)
	n.caughtUp = make([]bool, n.parts)
	n.takingAt = make([]time.Time, n.parts)
	n.taking = make([]takingMark, n.parts)
	n.busy = make([]bool, n.parts)
	n.arriving = make([]bool, n.parts)
	n.promised = make([]promise, n.parts)
	for p := range n.promised {
		e, to, err := n.store.Promised(p)
		if err != nil {
			n.log.Error("promised epoch unreadable; taken as none", "partition", p, "error", err)
		}
		n.promised[p] = promise{epoch: e, to: to}
	}
	n.fwd = make([]*forwarder, n.parts)
	n.epochs = make([]atomic.Uint64, n.parts)
	for p := range n.fwd {
		n.fwd[p] = &forwarder{}
	}
	return n
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("cluster: pick a remote port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// admit keeps out of the cluster a gateway with another number of
// partitions: it would place devices on other partitions than this one.
func (n *Node) admit(meta *pb.NodeMeta) error {
	if meta.Partitions != 0 && int(meta.Partitions) != n.parts {
		return fmt.Errorf("cluster: gateway %s has %d partitions and %s has %d: every gateway of a cluster must use the same partitions",
			meta.Gateway, meta.Partitions, n.cfg.Gateway, n.parts)
	}
	return nil
}

// meta is this gateway's gossiped metadata with its serving bitmap.
func (n *Node) meta(remoteAddr string) *pb.NodeMeta {
	bits := make([]byte, (n.parts+7)/8)
	for p := 0; p < n.parts; p++ {
		if n.gw.Serving(p) {
			bits[p/8] |= 1 << (p % 8)
		}
	}
	draining := n.announceDrain.Load()
	return &pb.NodeMeta{RemoteAddr: remoteAddr, HttpAddr: n.cfg.HTTPAddr, Version: n.cfg.Version, Gateway: n.cfg.Gateway, Serving: bits, Draining: draining,
		Partitions: uint32(n.parts), RelayOutputs: n.cfg.Relay != nil}
}

func serves(m *pb.NodeMeta, p int) bool {
	return m != nil && p/8 < len(m.Serving) && m.Serving[p/8]&(1<<(p%8)) != 0
}

func (n *Node) remoteAddr() string { return n.system.Address() }

// publishMeta marks the serving bitmap changed; the loop gossips it
// (once for many changes: a gateway that starts serves every partition
// at about the same time).
func (n *Node) publishMeta() {
	n.metaDirty.Store(true)
	n.wakeLoop()
}

// metaGossiper gossips the metadata when it changed; UpdateNode waits for
// the broadcast, so not on the loop.
func (n *Node) metaGossiper() {
	defer n.wg.Done()
	t := time.NewTicker(loopEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if !n.metaDirty.Swap(false) {
			continue
		}
		if err := n.ml.UpdateMeta(n.meta(n.remoteAddr()), time.Second); err != nil {
			n.log.Debug("metadata update: broadcast not confirmed (it spreads by gossip anyway)", "error", err)
		}
	}
}

// Close stops the node without a hand-off (a crash, for the others): use
// Drain first for a planned removal.
func (n *Node) Close() error {
	if n.stopped.Swap(true) {
		return nil
	}
	n.AbortForwards()
	close(n.stop)
	n.wg.Wait()
	err := n.ml.Shutdown()
	n.closeStreams()
	n.remote.Shutdown(false)
	n.changes.flush()
	return err
}

// closeStreams closes every outgoing stream: the callbacks of what the
// peers had not acknowledged run with ok false.
func (n *Node) closeStreams() {
	n.st.mu.Lock()
	var fns []func(bool)
	for m := range n.st.out {
		fns = append(fns, n.st.closeStream(m)...)
	}
	n.st.mu.Unlock()
	runAll(fns, false)
}

// Drain hands every partition this gateway serves to the next owner and
// leaves the cluster: a planned removal without loss.
func (n *Node) Drain(ctx context.Context) error {
	n.log.Info("draining: handing off every partition, then leaving")
	// First the others learn that this gateway drains: they place
	// partitions without it (and hand it nothing), but still see what it
	// serves, so nobody takes a partition over before its hand-off. Then
	// this gateway places without itself and hands off.
	n.announceDrain.Store(true)
	if err := n.ml.UpdateMeta(n.meta(n.remoteAddr()), 2*time.Second); err != nil {
		n.log.Warn("drain not gossiped within 2 s; handing off anyway", "error", err)
	}
	select {
	case <-time.After(drainSettle):
	case <-ctx.Done():
	}
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	defer func() {
		if err := n.ml.LeaveOnly(2 * time.Second); err != nil {
			n.log.Warn("leave not gossiped", "error", err)
		}
	}()
	for {
		left := 0
		for p := 0; p < n.parts; p++ {
			if n.gw.Serving(p) {
				left++
			}
		}
		n.mu.Lock()
		others := len(n.bases)
		n.mu.Unlock()
		if left == 0 {
			n.changes.flush()
			n.log.Info("drained: no partition left")
			return n.drainParked(ctx, others)
		}
		if others == 0 {
			// The whole cluster stops: nobody to hand off to. The
			// partitions stay in this gateway's store (a clean stop
			// checkpoints them) for the next start.
			n.changes.flush()
			n.log.Info("drain: no gateway left to hand off to; keeping the partitions", "partitions", left)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: drain: %d partitions not handed off: %w", left, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// drainParked waits until the input parked here has been forwarded (a
// drained gateway may never start again).
func (n *Node) drainParked(ctx context.Context, others int) error {
	for n.parkedNow.Load() > 0 {
		if others == 0 {
			n.log.Warn("drain: parked input stays in this gateway's store until it starts again", "events", n.parkedNow.Load())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: drain: %d parked events not forwarded: %w", n.parkedNow.Load(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// levelHandler drops records below a minimum level.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

// Handle turns protoactor's endpoint lines (one per retry while a peer
// is down, which the cluster reports itself) into debug lines.
func (h levelHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "Endpoint") {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.min}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(name), h.min}
}
