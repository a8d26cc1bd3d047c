package cluster

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message from another gateway (or a connection to the cluster
// link) is refused: the reason label of
// millstream_cluster_rejected_messages_total. A refused message changes
// nothing on this gateway.
const (
	// rejectIdentity: the message claims another sender than the
	// gateway its TLS certificate names, or the certificate is not a
	// gateway certificate of the cluster CA.
	rejectIdentity = "identity"
	// rejectNotMember: the authenticated sender is not a current member.
	rejectNotMember = "not_member"
	// rejectMalformed: an envelope or message that does not decode or
	// lacks what it needs.
	rejectMalformed = "malformed"
	// rejectRange: a partition, epoch, sequence, count, size or name out
	// of range.
	rejectRange = "out_of_range"
	// rejectOversized: a message larger than the protocol sends.
	rejectOversized = "oversized"
	// rejectFuture: a job version implausibly far above those known here.
	rejectFuture = "future_version"
	// rejectType: a message type, target actor or RPC the cluster never
	// uses (protoactor would deliver any registered type to any actor).
	rejectType = "unexpected_type"
	// rejectPanic: handling remote input panicked; recovered.
	rejectPanic = "panic"
	// rejectOutput: relayed output rows for an output no job here has as
	// MQTT, on a topic its template cannot give, or sent to a gateway
	// that takes none (relay.go).
	rejectOutput = "unknown_output"
)

var rejectReasons = []string{rejectIdentity, rejectNotMember, rejectMalformed, rejectRange, rejectOversized, rejectFuture, rejectType, rejectPanic, rejectOutput}

// rejectLogEvery is how often each reason may log a line: an attacker (or
// a broken peer) sending thousands of bad messages a second must not
// flood the log; the counter has every one.
const rejectLogEvery = time.Second

// rejectError is why a message is refused.
type rejectError struct {
	reason string
	msg    string
}

func (e *rejectError) Error() string { return e.msg }

func reject(reason, format string, args ...any) error {
	return &rejectError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// rejections counts and logs (rate limited) what the cluster link refuses.
type rejections struct {
	log    *slog.Logger
	counts map[string]*atomic.Uint64 // fixed keys: read without a lock

	mu      sync.Mutex
	lastLog map[string]time.Time
	quiet   map[string]uint64 // refusals not logged since the last line
}

func newRejections(log *slog.Logger) *rejections {
	r := &rejections{log: log, counts: map[string]*atomic.Uint64{}, lastLog: map[string]time.Time{}, quiet: map[string]uint64{}}
	for _, reason := range rejectReasons {
		r.counts[reason] = &atomic.Uint64{}
	}
	return r
}

// refuse counts a refused message; err says why (a *rejectError names the
// reason, anything else counts as malformed).
func (r *rejections) refuse(err error, attrs ...any) {
	reason := rejectMalformed
	if re, ok := err.(*rejectError); ok {
		reason = re.reason
	}
	r.counts[reason].Add(1)
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.lastLog[reason]) < rejectLogEvery {
		r.quiet[reason]++
		r.mu.Unlock()
		return
	}
	r.lastLog[reason] = now
	suppressed := r.quiet[reason]
	r.quiet[reason] = 0
	r.mu.Unlock()
	r.log.Warn("cluster message refused", append([]any{"reason", reason, "error", err.Error(), "suppressed_since_last", suppressed}, attrs...)...)
}

// panicked counts and logs a panic recovered while handling remote input.
func (r *rejections) panicked(where string, v any) {
	r.counts[rejectPanic].Add(1)
	r.log.Error("recovered from a panic while handling a message from another gateway; the message is dropped",
		"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// snapshot is the count per reason (only reasons counted).
func (r *rejections) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	for reason, c := range r.counts {
		if v := c.Load(); v > 0 {
			out[reason] = v
		}
	}
	return out
}

// recoverPanic, deferred at a goroutine or actor boundary where remote
// input is handled, keeps one bad message from killing the process.
func (n *Node) recoverPanic(where string) {
	if v := recover(); v != nil {
		n.rej.panicked(where, v)
	}
}

// goSafe runs f on its own goroutine with recoverPanic (counted in
// n.handlers).
func (n *Node) goSafe(where string, f func()) {
	n.handlers.Add(1)
	go func() {
		defer n.handlers.Done()
		defer n.recoverPanic(where)
		f()
	}()
}

var descRejected = prometheus.NewDesc("millstream_cluster_rejected_messages_total",
	"Messages and connections from other gateways refused by the cluster link, by reason (identity, not_member, malformed, out_of_range, oversized, future_version, unexpected_type, panic, unknown_output).",
	[]string{"reason"}, nil)

// Describe and Collect make the node a prometheus.Collector of its
// refusal counters and its output relay's (relay.go) (register it with the admin API's registry).
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRejected
	n.relay.Describe(ch)
}

func (n *Node) Collect(ch chan<- prometheus.Metric) {
	reasons := make([]string, 0, len(n.rej.counts))
	for reason := range n.rej.counts {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n.rej.counts[reason].Load()), reason)
	}
	n.relay.Collect(ch)
}

var _ prometheus.Collector = (*Node)(nil)
