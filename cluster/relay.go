package cluster

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Cluster-wide outputs (README, "Cluster-wide outputs"; actors/relay.go,
// R1-R2). A gateway's MQTT outputs hand the rows they published on its
// embedded broker to RelayRows, which sends them in OutputRelay messages
// on the stream to every live gateway whose metadata says it takes them
// (NodeMeta.relay_outputs); that gateway checks them (validate.go, then
// R2) and publishes them on its broker, never relays them again.
//
//	C15: what waits for one peer's acknowledgement is bounded
//	     (NodeConfig.RelayQueueBytes); past it rows for that peer are
//	     dropped and counted, and the output's delivery never waits for a
//	     peer. Rows relayed to a peer ride its stream (C10): applied in
//	     order, once, as long as it stays the same member; those it had
//	     not acknowledged when it left the view are lost for it and
//	     counted. The receiver queues what it publishes within the same
//	     bound, off the cluster actor.
//
// So a subscriber on any gateway gets every row an MQTT output delivers
// once, with the "_id" of the row, as long as its gateway and the one
// that delivered the row stay up and in touch; a row a gateway delivered
// just before it crashed may reach its own subscribers only, and rows
// relayed while a peer was out of the view are not replayed to it.

// DefaultRelayQueueBytes is the default of NodeConfig.RelayQueueBytes.
const DefaultRelayQueueBytes = 8 << 20

// RelayPublisher publishes on this gateway's embedded broker the rows
// another gateway relayed (actors.Outputs implements it): the rows
// before the first bad one, and an error wrapping actors.ErrRelayRefused
// for a row it does not publish (R2). Called from one goroutine, never
// the cluster actor's.
type RelayPublisher interface {
	PublishRelayed(job, output string, rows []*pb.RelayedRow) (int, error)
}

var (
	_ RelayPublisher       = (*actors.Outputs)(nil)
	_ actors.RelayLink     = (*Node)(nil)
	_ prometheus.Collector = (*relayState)(nil)
)

// Relay row fates: the kind label of millstream_output_relay_rows_total.
const (
	relaySent      = "sent"      // queued to a peer (one per peer)
	relayDropped   = "dropped"   // not queued: the peer's queue was full
	relayLost      = "lost"      // the peer left before acknowledging
	relayPublished = "published" // received and published here
	relayRefused   = "refused"   // received and refused here (R2)
	relayOverflow  = "overflow"  // received, dropped: this gateway's queue was full
)

var relayKinds = []string{relaySent, relayDropped, relayLost, relayPublished, relayRefused, relayOverflow}

// relayState is the node's share of the relay: per peer, the bytes sent
// and not yet acknowledged, and the rows received waiting to be published.
type relayState struct {
	counts map[string]*atomic.Uint64 // fixed keys: read without a lock

	mu      sync.Mutex
	pending map[string]int64 // member -> bytes sent, not acknowledged
	inQ     []relayArrival
	inBytes int64
	wake    chan struct{}
	dropLog time.Time // when a drop was last logged
}

type relayArrival struct {
	from  string
	body  *pb.OutputRelay
	bytes int64
}

func newRelayState() *relayState {
	r := &relayState{counts: map[string]*atomic.Uint64{}, pending: map[string]int64{}, wake: make(chan struct{}, 1)}
	for _, k := range relayKinds {
		r.counts[k] = &atomic.Uint64{}
	}
	return r
}

func (r *relayState) add(kind string, rows int) { r.counts[kind].Add(uint64(rows)) }

// RelayRows implements actors.RelayLink: it queues the rows on the stream
// to every gateway that takes relayed rows, within each one's bound
// (C15). It never blocks on a peer.
func (n *Node) RelayRows(job, output string, rows []*pb.OutboxEntry) {
	if n.stopped.Load() || len(rows) == 0 {
		return
	}
	peers := n.relayPeers()
	if len(peers) == 0 {
		return
	}
	for len(rows) > 0 {
		body, k := relayBatch(job, output, rows)
		rows = rows[k:]
		size := proto.Size(body)
		if !n.fitsOut("output relay", size) {
			n.relay.add(relayDropped, k*len(peers))
			continue
		}
		for _, p := range peers {
			n.relayTo(p, body, int64(size), k)
		}
	}
}

// relayBatch is the OutputRelay of the first rows, up to about
// msgTargetBytes and maxRelayRows (at least one row), and how many.
func relayBatch(job, output string, rows []*pb.OutboxEntry) (*pb.OutputRelay, int) {
	body := &pb.OutputRelay{Job: job, Output: output}
	bytes := 0
	for _, r := range rows {
		if len(body.Rows) == maxRelayRows || len(body.Rows) > 0 && bytes+len(r.Topic)+len(r.Payload) > msgTargetBytes {
			break
		}
		body.Rows = append(body.Rows, &pb.RelayedRow{Topic: r.Topic, Payload: r.Payload})
		bytes += len(r.Topic) + len(r.Payload) + 16
	}
	return body, len(body.Rows)
}

// relayPeers are the newest live members of the other gateways that take
// relayed rows.
func (n *Node) relayPeers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for base, name := range n.bases {
		if base == n.cfg.Gateway {
			continue
		}
		if m, ok := n.view[name]; ok && m.Meta.GetRelayOutputs() {
			out = append(out, name)
		}
	}
	return out
}

// relayTo queues one OutputRelay of rows rows (size bytes) to member, or
// drops it when the member's queue would pass its bound.
func (n *Node) relayTo(member string, body *pb.OutputRelay, size int64, rows int) {
	r := n.relay
	r.mu.Lock()
	if r.pending[member]+size > n.cfg.RelayQueueBytes {
		logIt := time.Since(r.dropLog) >= 10*time.Second
		if logIt {
			r.dropLog = time.Now()
		}
		queued := r.pending[member]
		r.mu.Unlock()
		r.add(relayDropped, rows)
		if logIt {
			n.log.Warn("output rows not relayed: the gateway's relay queue is full (it is slow or unreachable); its subscribers miss them",
				"member", member, "queued_bytes", queued, "max", n.cfg.RelayQueueBytes, "dropped_rows_total", r.counts[relayDropped].Load())
		}
		return
	}
	r.pending[member] += size
	r.mu.Unlock()
	done := func(ok bool) {
		r.mu.Lock()
		if r.pending[member] -= size; r.pending[member] <= 0 {
			delete(r.pending, member)
		}
		r.mu.Unlock()
		if !ok {
			r.add(relayLost, rows)
		}
	}
	if !n.sendTo(member, &pb.StreamMsg{Body: &pb.StreamMsg_OutputRelay{OutputRelay: body}}, done) {
		done(false)
		return
	}
	r.add(relaySent, rows)
}

// acceptRelay queues relayed rows (checked by checkBody) for the relay
// publisher; called by the cluster actor, so it never publishes itself:
// the outputs' lock may be held while a job is configured.
func (n *Node) acceptRelay(from string, body *pb.OutputRelay) {
	if n.cfg.Relay == nil {
		n.rej.refuse(reject(rejectOutput, "relayed output rows from %s: this gateway takes none", from), "from", from)
		n.relay.add(relayRefused, len(body.Rows))
		return
	}
	size := int64(proto.Size(body))
	r := n.relay
	r.mu.Lock()
	if r.inBytes+size > n.cfg.RelayQueueBytes {
		r.mu.Unlock()
		r.add(relayOverflow, len(body.Rows))
		return
	}
	r.inQ = append(r.inQ, relayArrival{from: from, body: body, bytes: size})
	r.inBytes += size
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// relayPublisher publishes what acceptRelay queued until the node stops.
func (n *Node) relayPublisher() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.relay.wake:
		}
		n.publishRelayed()
	}
}

// publishRelayed publishes every queued arrival through NodeConfig.Relay
// (R2): what it refuses is counted as a refused message.
func (n *Node) publishRelayed() {
	defer n.recoverPanic("output relay")
	r := n.relay
	for {
		r.mu.Lock()
		if len(r.inQ) == 0 {
			r.mu.Unlock()
			return
		}
		a := r.inQ[0]
		r.inQ[0] = relayArrival{}
		r.inQ = r.inQ[1:]
		r.inBytes -= a.bytes
		r.mu.Unlock()
		done, err := n.cfg.Relay.PublishRelayed(a.body.Job, a.body.Output, a.body.Rows)
		r.add(relayPublished, done)
		switch {
		case err == nil:
		case errors.Is(err, actors.ErrRelayRefused):
			r.add(relayRefused, len(a.body.Rows)-done)
			n.rej.refuse(reject(rejectOutput, "relayed output rows from %s: %v", a.from, err), "from", a.from)
		default:
			// The broker refused (it is closing): the rows are lost here.
			r.add(relayRefused, len(a.body.Rows)-done)
			n.log.Warn("relayed output rows not published", "from", a.from, "job", a.body.Job, "output", a.body.Output, "error", err)
		}
	}
}

var (
	descRelayRows = prometheus.NewDesc("millstream_output_relay_rows_total",
		"Rows of MQTT outputs relayed between the gateways' embedded brokers (cluster-wide outputs), by kind: sent (to one peer), dropped (the peer's queue was full), lost (the peer left before taking them), published (received and published here), refused (received and not published: not an output of a job here, or the broker refused), overflow (received while this gateway's queue was full).",
		[]string{"kind"}, nil)
	descRelayQueued = prometheus.NewDesc("millstream_output_relay_queued_bytes",
		"Bytes of relayed output rows sent to other gateways and not yet acknowledged, all peers together.", nil, nil)
)

func (r *relayState) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRelayRows
	ch <- descRelayQueued
}

func (r *relayState) Collect(ch chan<- prometheus.Metric) {
	for _, k := range relayKinds {
		ch <- prometheus.MustNewConstMetric(descRelayRows, prometheus.CounterValue, float64(r.counts[k].Load()), k)
	}
	r.mu.Lock()
	var queued int64
	for _, b := range r.pending {
		queued += b
	}
	r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRelayQueued, prometheus.GaugeValue, float64(queued))
}
