package actors

import (
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Rejected is one event or row a job refused, and where it came from.
type Rejected struct {
	Job       string
	Partition int
	// Pos is the log entry the partition was applying (0: none, as in
	// memory mode) and Idx the how-manieth refusal of that entry: a
	// replay after a restart refuses the same entries again, and the
	// dead-letter store keeps each once.
	Pos    uint64
	Idx    uint32
	Source string // the device
	exec.DeadLetter
}

// DeadLetterSink receives every rejected event. Optional.
type DeadLetterSink interface {
	DeadLetter(r Rejected)
}

// DeadLetters keeps what the gateway refused, with the reason, the
// source, the time and the first bytes of the payload: in the store with
// durable state (bounded, the oldest removed first), in a ring of the
// newest memoryDeadLetters otherwise. Each is counted by kind, logged
// (at most one line per kind every 10 s, with the count since), and, when
// a topic is set, published there as JSON.
type DeadLetters struct {
	store  *state.DeadLetterStore // nil: memory only
	logger *slog.Logger
	topic  string
	pub    atomic.Pointer[Publisher]

	mu        sync.Mutex
	ring      []state.DeadLetterEntry // memory mode, oldest first
	nextID    uint64
	byKind    map[string]uint64
	logged    map[string]time.Time // last log line per kind
	skipped   map[string]uint64    // refusals not logged since that line
	storeErrs uint64
}

// memoryDeadLetters is how many dead letters a gateway without durable
// state keeps.
const memoryDeadLetters = 1000

// deadLetterLogEvery bounds the log lines about dead letters per kind.
const deadLetterLogEvery = 10 * time.Second

// NewDeadLetters keeps dead letters in store (nil: in memory), publishing
// each to topic when it is set and a publisher is.
func NewDeadLetters(store *state.DeadLetterStore, topic string, logger *slog.Logger) *DeadLetters {
	if logger == nil {
		logger = slog.Default()
	}
	return &DeadLetters{store: store, logger: logger, topic: topic, nextID: 1,
		byKind: map[string]uint64{}, logged: map[string]time.Time{}, skipped: map[string]uint64{}}
}

// SetPublisher sets where dead letters are published (with a topic).
func (d *DeadLetters) SetPublisher(p Publisher) { d.pub.Store(&p) }

// DeadLetter keeps one refusal of a job (DeadLetterSink).
func (d *DeadLetters) DeadLetter(r Rejected) {
	kind := r.Kind
	if kind == "" {
		kind = "other"
	}
	d.Add(&pb.DeadLetter{Time: time.Now().UnixNano(), Job: r.Job, Input: r.Input, Stage: r.Stage, Kind: kind, Reason: r.Reason,
		Source: r.Source, Partition: uint32(max(r.Partition, 0)), Payload: r.Payload, PayloadBytes: uint32(len(r.Payload))}, r.Pos, r.Idx)
}

// Add keeps a dead letter; pos and idx as in Rejected. Its payload is
// cut to state.MaxDeadLetterPayload bytes.
func (d *DeadLetters) Add(dl *pb.DeadLetter, pos uint64, idx uint32) {
	if dl.Time == 0 {
		dl.Time = time.Now().UnixNano()
	}
	if dl.PayloadBytes == 0 {
		dl.PayloadBytes = uint32(len(dl.Payload))
	}
	if len(dl.Payload) > state.MaxDeadLetterPayload {
		dl.Payload = append([]byte(nil), dl.Payload[:state.MaxDeadLetterPayload]...)
	} else {
		dl.Payload = append([]byte(nil), dl.Payload...)
	}
	kept := true
	if d.store != nil {
		var err error
		if kept, err = d.store.Add(dl, pos, idx); err != nil {
			d.mu.Lock()
			d.storeErrs++
			d.mu.Unlock()
			d.logger.Error("dead letter not kept", "kind", dl.Kind, "job", dl.Job, "error", err)
		}
		if !kept {
			return // a replay's: kept and counted before the restart
		}
	}
	d.mu.Lock()
	d.byKind[dl.Kind]++
	if d.store == nil {
		if len(d.ring) == memoryDeadLetters {
			d.ring = append(d.ring[:0], d.ring[1:]...)
		}
		d.ring = append(d.ring, state.DeadLetterEntry{ID: d.nextID, DeadLetter: dl})
		d.nextID++
	}
	now := time.Now()
	logIt := now.Sub(d.logged[dl.Kind]) >= deadLetterLogEvery
	var since uint64
	if logIt {
		d.logged[dl.Kind], since, d.skipped[dl.Kind] = now, d.skipped[dl.Kind], 0
	} else {
		d.skipped[dl.Kind]++
	}
	d.mu.Unlock()
	if logIt {
		d.logger.Warn("dead letter: input refused (GET /v1/deadletters lists them)", "kind", dl.Kind, "job", dl.Job, "input", dl.Input,
			"stage", dl.Stage, "source", dl.Source, "reason", dl.Reason, "more_since_last_line", since)
	}
	if p := d.pub.Load(); p != nil && d.topic != "" {
		if data, err := json.Marshal(DeadLetterJSON(0, dl)); err == nil {
			_ = (*p).Publish(d.topic, data, 0)
		}
	}
}

// List returns up to limit dead letters, newest first, with ids below
// before (0: from the newest).
func (d *DeadLetters) List(before uint64, limit int) ([]state.DeadLetterEntry, error) {
	if d.store != nil {
		return d.store.List(before, limit)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []state.DeadLetterEntry
	for i := len(d.ring) - 1; i >= 0 && len(out) < limit; i-- {
		if before == 0 || d.ring[i].ID < before {
			out = append(out, d.ring[i])
		}
	}
	return out, nil
}

// Counts returns how many dead letters of each kind were refused since
// the gateway started.
func (d *DeadLetters) Counts() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.byKind))
	for k, v := range d.byKind {
		out[k] = v
	}
	return out
}

// DeadLetterView is a dead letter as the admin API and the publisher
// show it.
type DeadLetterView struct {
	ID           uint64 `json:"id,omitempty"`
	Time         string `json:"time"`
	Job          string `json:"job,omitempty"`
	Input        string `json:"input,omitempty"`
	Stage        string `json:"stage,omitempty"`
	Kind         string `json:"kind"`
	Reason       string `json:"reason"`
	Source       string `json:"source,omitempty"`
	Partition    uint32 `json:"partition"`
	Payload      string `json:"payload"`
	PayloadBytes uint32 `json:"payloadBytes"`
	Truncated    bool   `json:"truncated,omitempty"`
}

// DeadLetterJSON is the view of one dead letter.
func DeadLetterJSON(id uint64, dl *pb.DeadLetter) DeadLetterView {
	return DeadLetterView{ID: id, Time: time.Unix(0, dl.Time).UTC().Format(time.RFC3339Nano), Job: dl.Job, Input: dl.Input, Stage: dl.Stage,
		Kind: dl.Kind, Reason: dl.Reason, Source: dl.Source, Partition: dl.Partition, Payload: string(dl.Payload),
		PayloadBytes: dl.PayloadBytes, Truncated: int(dl.PayloadBytes) > len(dl.Payload)}
}

var (
	descDeadLetters       = prometheus.NewDesc("millstream_dead_letters_total", "Events and rows refused, by kind (malformed, wrong_type, bad_timestamp, bad_key, expression_error, reference_row, oversized, poison, bad_device_id), each kept in the dead-letter store.", []string{"kind"}, nil)
	descDeadLetterKept    = prometheus.NewDesc("millstream_dead_letter_store_entries", "Dead letters kept in the dead-letter store.", nil, nil)
	descDeadLetterBytes   = prometheus.NewDesc("millstream_dead_letter_store_bytes", "Bytes of the dead letters kept.", nil, nil)
	descDeadLetterEvicted = prometheus.NewDesc("millstream_dead_letters_evicted_total", "Dead letters removed, oldest first, to keep the store within its limits.", nil, nil)
)

// Describe implements prometheus.Collector.
func (d *DeadLetters) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDeadLetters
	ch <- descDeadLetterKept
	ch <- descDeadLetterBytes
	ch <- descDeadLetterEvicted
}

// Collect implements prometheus.Collector.
func (d *DeadLetters) Collect(ch chan<- prometheus.Metric) {
	for kind, n := range d.Counts() {
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.CounterValue, float64(n), kind)
	}
	var st state.DeadLetterStats
	if d.store != nil {
		st = d.store.Stats()
	} else {
		d.mu.Lock()
		st.Entries = len(d.ring)
		d.mu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(descDeadLetterKept, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(descDeadLetterBytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descDeadLetterEvicted, prometheus.CounterValue, float64(st.Evicted))
}
