package actors

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Store-and-forward. Partitions put rows in the outbox (state.Outbox:
// the store's, or one in memory), and one drainer per output sends them
// to its deliverer in order, retrying with exponential backoff and
// jitter while the sink is unreachable, dropping rows past their
// time-to-live, and applying the output's quota. Delivery is at least
// once; every row carries its "_id" so receivers can drop a resend (a
// file output drops its own resends after a crash).

// Delivery defaults.
const (
	DefaultTTL       = 2 * time.Hour
	DefaultQuota     = 256 << 20
	DefaultRetryMin  = time.Second
	DefaultRetryMax  = time.Minute
	DefaultDrainRows = 500
)

// errPermanent marks a delivery error that no retry can fix (an HTTP 4xx):
// the row goes to dead letter instead of blocking the queue.
var errPermanent = errors.New("refused permanently")

// deliverer is one output's sink, one implementation per kind (mqttSink,
// fileSink, httpSink, logSink). encode is called from partition actors,
// concurrently; deliver and close from the output's drainer only, one at
// a time (Configure stops the drainer before it closes the sink).
type deliverer interface {
	// encode builds the outbox form of a row (rec is borrowed).
	encode(job, output string, ts int64, rec *value.Record, id string) *pb.OutboxEntry
	// deliver sends rows in order and reports how many it sent before an
	// error; errPermanent: the row at that index is refused for good.
	deliver(ctx context.Context, rows []*pb.OutboxEntry) (int, error)
	close() error
}

// OutputStatus is an output's store-and-forward state (admin API, metrics).
type OutputStatus struct {
	Output       string  `json:"output"`
	Backlog      int64   `json:"backlogRows"`
	BacklogBytes int64   `json:"backlogBytes"`
	QuotaBytes   int64   `json:"quotaBytes"`
	Policy       string  `json:"whenFull"`
	Delivered    uint64  `json:"delivered"`
	Expired      uint64  `json:"expired"`
	Abandoned    uint64  `json:"abandoned"` // rows of partitions another gateway took over (it re-emits them)
	Dropped      uint64  `json:"droppedOverQuota"`
	DeadLettered int64   `json:"deadLettered"`
	Retries      uint64  `json:"retries"`
	Restarts     uint64  `json:"restarts"` // the drainer restarted after a panic
	Full         bool    `json:"full"`     // reject: input is refused on this output's account; drop_oldest: at its quota
	OldestAge    float64 `json:"oldestAgeSeconds"`
	LastError    string  `json:"lastError,omitempty"`
}

// EnableOutbox makes o durable: rows go through st's outbox. Call before
// Configure and before the gateway is made.
func (o *Outputs) EnableOutbox(st *state.Store, logger *slog.Logger) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if logger == nil {
		logger = slog.Default()
	}
	o.box, o.logger = st, logger
}

// Encode implements Sink.
func (o *Outputs) Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool) {
	key, s := o.sink(job, output)
	if s == nil {
		return state.OutRow{}, false
	}
	e := s.encode(job, output, ts, rec, id)
	e.Enqueued = time.Now().UnixNano()
	return state.OutRow{Output: key, Entry: e}, true
}

// Outbox implements Sink.
func (o *Outputs) Outbox() state.Outbox { return o.box }

// Notify implements Sink.
func (o *Outputs) Notify() {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, d := range o.drainers {
		d.wake()
	}
}

// Admit implements Sink: input is refused while an output whose policy
// is "reject" is over its quota.
func (o *Outputs) Admit() error {
	if o.full.Load() > 0 {
		return ErrOverQuota
	}
	return nil
}

// Settle implements Sink: it waits until every row in the outbox when
// called has left it (delivered, expired, dropped or dead-lettered), or
// its output is failing or fenced (its rows stay and are retried).
func (o *Outputs) Settle(ctx context.Context) error { return o.settle(ctx, 0) }

// settle is Settle, with a failing output given tries more attempts.
func (o *Outputs) settle(ctx context.Context, tries uint64) error {
	hw := o.box.OutboxHighWater()
	start := map[string]uint64{}
	o.mu.RLock()
	for key, d := range o.drainers {
		start[key] = d.retries.Load()
	}
	o.mu.RUnlock()
	for {
		heads, err := o.box.OutboxHeads()
		if err != nil {
			return err
		}
		waiting := false
		o.mu.RLock()
		for output, seq := range hw {
			if head, ok := heads[output]; seq > 0 && ok && head <= seq {
				if d := o.drainers[output]; d != nil && !d.stuck(start[output]+tries) {
					waiting = true
				}
			}
		}
		o.mu.RUnlock()
		if !waiting {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Status lists every output's store-and-forward state, by name.
func (o *Outputs) Status() []OutputStatus {
	o.mu.RLock()
	ds := make([]*drainer, 0, len(o.drainers))
	for _, d := range o.drainers {
		ds = append(ds, d)
	}
	o.mu.RUnlock()
	out := make([]OutputStatus, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Output < out[j].Output })
	return out
}

// startDrainer starts the drainer of an output (o.mu held; Configure
// stopped the one before).
func (o *Outputs) startDrainer(key string, s deliverer, cfg *pb.Delivery) {
	d := &drainer{o: o, key: key, sink: s, store: o.box, logger: o.warnLogger(),
		ttl: DefaultTTL, quota: DefaultQuota, policy: "reject", min: DefaultRetryMin, max: DefaultRetryMax, rows: DefaultDrainRows,
		done: make(chan struct{})}
	if cfg != nil {
		if cfg.Ttl != nil {
			d.ttl = cfg.Ttl.AsDuration()
		}
		if cfg.QuotaBytes > 0 {
			d.quota = cfg.QuotaBytes
		}
		if cfg.WhenFull != "" {
			d.policy = cfg.WhenFull
		}
		if cfg.RetryMin != nil {
			d.min = cfg.RetryMin.AsDuration()
		}
		if cfg.RetryMax != nil {
			d.max = cfg.RetryMax.AsDuration()
		}
		if cfg.BatchSize > 0 {
			d.rows = int(cfg.BatchSize)
		}
		d.liveFirst = cfg.LiveFirst
	}
	if o.system == nil {
		o.system = newActorSystem(d.logger)
	}
	d.system = o.system
	d.ctx, d.cancel = context.WithCancel(context.Background())
	o.drainers[key] = d
	// The producer returns d itself: a restart keeps the drainer's place
	// in the outbox and its counters.
	props := actor.PropsFromProducer(func() actor.Actor { return d }, actor.WithGuardian(restartPolicy()))
	d.pid = o.system.Root.Spawn(props)
}

// restartPolicy is how the gateway's actors are restarted after a panic:
// always, after 100 ms times the number of its failures since it last
// went 10 s without one (protoactor's backoff strategy: linear). Actors spawned from the root take it
// as their guardian (actor.WithGuardian): WithSupervisor is the policy an
// actor applies to its own children, and a root actor without a guardian
// gets protoactor's default, which stops it at the 11th failure in 10 s.
func restartPolicy() actor.SupervisorStrategy {
	return actor.NewExponentialBackoffStrategy(10*time.Second, 100*time.Millisecond)
}

// drainer is the actor that sends one output's outbox to its sink, one
// batch per drainStep. Between batches it waits on a timer: idle (new
// rows, drainKick, end the wait) or backing off after a failure (they do
// not). A panic while delivering restarts it (restartPolicy); a batch that
// panicked is sent again one row at a time, and a row whose delivery
// panics alone is dead-lettered, so one bad row cannot stop the output.
type drainer struct {
	o         *Outputs
	key       string
	sink      deliverer
	store     state.Outbox
	logger    *slog.Logger
	ttl       time.Duration
	quota     int64
	policy    string
	min, max  time.Duration
	rows      int
	liveFirst bool

	system   *actor.ActorSystem
	pid      *actor.PID
	ctx      context.Context // cancelled when stopping: ends a delivery
	cancel   context.CancelFunc
	stopped  atomic.Bool
	stopOnce sync.Once
	done     chan struct{}
	kicked   atomic.Bool // a drainKick is on its way

	// The actor's own state.
	started  bool
	backoff  time.Duration
	fresh    bool // live-first: alternate newest and oldest batches
	waiting  drainWait
	idleFor  time.Duration // the idle look's current interval
	timer    *time.Timer
	stepGen  uint64    // a drainStep of an older generation is stale
	inFlight [2]uint64 // the first and last seq of the batch being delivered (rows are numbered from 1)
	// isolateThrough: rows up to here are delivered one at a time (a
	// batch holding them panicked); poison: the row whose delivery
	// panicked alone.
	isolateThrough, poison uint64
	single                 bool

	cursor       uint64 // rows up to here are gone (O1)
	deletedTo    uint64 // rows up to here are deleted from the store
	deletedAt    time.Time
	full         atomic.Bool // refusing input (reject), counted in o.full; read by status too
	peak         int64       // largest backlog in bytes since the last compaction
	delivered    atomic.Uint64
	expired      atomic.Uint64
	dropped      atomic.Uint64
	abandoned    atomic.Uint64 // rows of partitions given up (Abandon)
	retries      atomic.Uint64
	restarts     atomic.Uint64
	lastErr      atomic.Pointer[string]
	oldestQueued atomic.Int64 // enqueue time of the oldest row seen, unix ns
}

type drainWait int

const (
	busy      drainWait = iota // a drainStep is queued
	idleWait                   // nothing to send: new rows end the wait
	retryWait                  // backing off after a failure
)

// Messages to a drainer.
type (
	drainStep struct{ gen uint64 }
	drainKick struct{}
)

// wake tells the drainer that rows came (one message on its way at most).
func (d *drainer) wake() {
	if !d.stopped.Load() && d.kicked.CompareAndSwap(false, true) {
		d.system.Root.Send(d.pid, drainKick{})
	}
}

// close stops the drainer (again: nothing more).
func (d *drainer) close() {
	d.stopOnce.Do(func() {
		d.stopped.Store(true)
		d.cancel()
		_ = d.system.Root.StopFuture(d.pid).Wait()
	})
	<-d.done
}

// stuck reports whether the drainer cannot deliver now: its last attempt
// failed and it has retried up to retries times in all, the gateway is
// fenced, or the drainer is stopped.
func (d *drainer) stuck(retries uint64) bool {
	select {
	case <-d.done:
		return true
	default:
	}
	if f := d.o.fenced; f != nil && f() {
		return true
	}
	return d.lastErr.Load() != nil && d.retries.Load() >= retries
}

func (d *drainer) status() OutputStatus {
	st := d.store.Outbox(d.key)
	s := OutputStatus{Output: d.key, Backlog: st.Entries, BacklogBytes: st.Bytes, QuotaBytes: d.quota, Policy: d.policy,
		Delivered: d.delivered.Load(), Expired: d.expired.Load(), Abandoned: d.abandoned.Load(), Dropped: d.dropped.Load(), DeadLettered: st.Dead,
		Retries: d.retries.Load(), Restarts: d.restarts.Load(), Full: d.full.Load()}
	if d.policy == "drop_oldest" {
		// Never refuses: full is at the quota. (reject: what Admit
		// answers, refused until the outbox is down to 90% of its quota.)
		s.Full = st.Bytes >= d.quota
	}
	if t := d.oldestQueued.Load(); t > 0 && st.Entries > 0 {
		s.OldestAge = time.Since(time.Unix(0, t)).Seconds()
	}
	if e := d.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Receive implements actor.Actor.
func (d *drainer) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		if d.started {
			d.restarts.Add(1)
		}
		d.started, d.backoff, d.fresh = true, d.min, true
		d.next(c)
	case *actor.Restarting:
		d.stopTimer()
		if r := d.inFlight; r[0] != 0 {
			d.logger.Error("output drainer restarted: delivering a batch panicked", "output", d.key, "first_row", r[0], "last_row", r[1], "one_row", d.single)
			if d.single {
				d.poison = r[0]
			} else {
				d.isolateThrough = max(d.isolateThrough, r[1])
			}
			d.inFlight = [2]uint64{}
		}
	case *actor.Stopping:
		d.stopTimer()
		d.flushDeletes(true)
		d.setFull(false)
	case *actor.Stopped:
		close(d.done)
	case drainStep:
		if m.gen == d.stepGen && !d.stopped.Load() {
			d.step(c)
		}
	case drainKick:
		d.kicked.Store(false)
		switch d.waiting {
		case idleWait:
			if d.store.Outbox(d.key).Entries == 0 {
				return // rows of other outputs came
			}
			d.enforce()
			d.stopTimer()
			d.idleFor = 0
			d.next(c)
		case retryWait:
			d.enforce()
			d.expireHead()
		}
	}
}

// idleLookMax is the longest an idle drainer goes without looking at its
// outbox unasked.
const idleLookMax = 30 * time.Second

// next queues the next step now.
func (d *drainer) next(c actor.Context) {
	d.stepGen++
	d.waiting = busy
	c.Send(c.Self(), drainStep{d.stepGen})
}

// wait queues the next step after wait.
func (d *drainer) wait(c actor.Context, wait time.Duration, how drainWait) {
	d.stepGen++
	d.waiting = how
	gen, self := d.stepGen, c.Self()
	d.timer = time.AfterFunc(wait, func() {
		if !d.stopped.Load() {
			d.system.Root.Send(self, drainStep{gen})
		}
	})
}

func (d *drainer) stopTimer() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.stepGen++ // a step the timer sent already is stale
}

// step delivers one batch, or finds nothing to send, and queues the next
// step: at once after progress, after a backoff after a failure.
func (d *drainer) step(c actor.Context) {
	d.enforce()
	d.flushDeletes(false)
	var items []state.OutboxItem
	var err error
	newest := d.liveFirst && d.fresh
	items, err = d.store.ReadOutbox(d.key, d.cursor, d.rows, newest)
	head := !newest
	if err != nil {
		d.fail(err)
		d.wait(c, d.max, retryWait)
		return
	}
	if len(items) == 0 {
		if !head {
			d.fresh = false // no fresh rows: the backlog
			d.next(c)
			return
		}
		d.fresh = true
		d.flushDeletes(true)
		d.compact()
		// Rows come with a wake (Notify); the look without one is a
		// safety net, so an idle drainer looks less and less often (an
		// idle gateway's CPU, issue 18).
		d.idleFor = min(max(2*d.idleFor, time.Second), idleLookMax)
		d.wait(c, d.idleFor, idleWait)
		return
	}
	d.idleFor = 0
	d.oldestQueued.Store(items[0].Entry.Enqueued)
	if items = d.expire(items, head); len(items) == 0 {
		d.next(c)
		return
	}
	if items = d.dropAbandoned(items, head); len(items) == 0 {
		d.next(c)
		return
	}
	if f := d.o.fenced; f != nil && f() {
		// Cut off from the cluster's majority: another gateway may
		// serve these rows' partitions by now.
		d.wait(c, 100*time.Millisecond, retryWait)
		return
	}
	if d.poison != 0 && items[0].Seq == d.poison {
		d.logger.Error("output row dead-lettered: delivering it alone panicked", "output", d.key, "row", d.poison)
		d.remove(items[:1], true, false)
		if head {
			d.cursor = items[0].Seq
		}
		d.poison = 0
		d.next(c)
		return
	}
	d.single = items[0].Seq <= d.isolateThrough
	if d.single {
		items = items[:1]
	}
	d.inFlight = [2]uint64{items[0].Seq, items[len(items)-1].Seq}
	n, err := d.deliver(d.ctx, items)
	d.inFlight = [2]uint64{}
	if err == nil && d.liveFirst {
		d.fresh = !d.fresh // newest, then a batch of the backlog
	}
	if n > 0 {
		d.remove(items[:n], false, head)
		d.delivered.Add(uint64(n))
		d.lastErr.Store(nil)
		if head {
			d.cursor = items[n-1].Seq
		}
		d.backoff = d.min
	}
	if err == nil {
		d.next(c)
		return
	}
	if errors.Is(err, errPermanent) {
		// The row at n is refused for good: dead letter, go on.
		d.remove(items[n:n+1], true, false)
		if head {
			d.cursor = items[n].Seq
		}
		d.fail(err)
		d.next(c)
		return
	}
	if d.ctx.Err() != nil {
		return // stopping
	}
	d.retries.Add(1)
	d.fail(err)
	d.expireHead()
	wait := d.backoff/2 + rand.N(d.backoff/2+1) // jitter: [backoff/2, backoff]
	d.backoff = min(2*d.backoff, d.max)
	d.wait(c, wait, retryWait)
}

// deliver sends items, isolating a permanently refused row.
func (d *drainer) deliver(ctx context.Context, items []state.OutboxItem) (int, error) {
	rows := make([]*pb.OutboxEntry, len(items))
	for i, it := range items {
		rows[i] = it.Entry
	}
	return d.sink.deliver(ctx, rows)
}

func (d *drainer) fail(err error) {
	msg := err.Error()
	if old := d.lastErr.Load(); old == nil || *old != msg {
		d.logger.Warn("output delivery failed; retrying", "output", d.key, "error", err)
	}
	d.lastErr.Store(&msg)
}

// expire drops leading rows past their time-to-live.
func (d *drainer) expire(items []state.OutboxItem, head bool) []state.OutboxItem {
	cut := time.Now().Add(-d.ttl).UnixNano()
	n := 0
	for n < len(items) && items[n].Entry.Enqueued < cut {
		n++
	}
	if n > 0 {
		d.remove(items[:n], false, head)
		d.expired.Add(uint64(n))
		if head {
			d.cursor = items[n-1].Seq
		}
	}
	return items[n:]
}

// dropAbandoned removes leading rows of partitions this gateway gave up
// (another gateway re-emits them, C6) and returns the rows up to the next
// such row.
func (d *drainer) dropAbandoned(items []state.OutboxItem, head bool) []state.OutboxItem {
	all := d.o.abandoned.Load()
	if all == nil || len((*all)[d.key]) == 0 {
		return items
	}
	marks := (*all)[d.key]
	gone := func(it state.OutboxItem) bool {
		p := it.Entry.Partition
		return p != nil && it.Seq <= marks[int(*p)]
	}
	n := 0
	for n < len(items) && gone(items[n]) {
		n++
	}
	if n > 0 {
		d.remove(items[:n], false, head)
		d.abandoned.Add(uint64(n))
		if head {
			d.cursor = items[n-1].Seq
		}
		items = items[n:]
	}
	for i, it := range items {
		if gone(it) {
			return items[:i]
		}
	}
	return items
}

// Abandon drops the rows partition p has in the outboxes now, undelivered:
// the gateway lost p to another without a hand-off, and the new owner
// re-emits them from its safe checkpoint (C6).
func (o *Outputs) Abandon(p int) {
	hw := o.box.OutboxHighWater()
	o.abandonMu.Lock()
	next := map[string]map[int]uint64{}
	if cur := o.abandoned.Load(); cur != nil {
		for output, marks := range *cur {
			next[output] = maps.Clone(marks)
		}
	}
	for output, seq := range hw {
		if next[output] == nil {
			next[output] = map[int]uint64{}
		}
		next[output][p] = seq
	}
	o.abandoned.Store(&next)
	o.abandonMu.Unlock()
	o.Notify()
}

// enforce applies the quota: drop the oldest rows, or refuse input.
func (d *drainer) enforce() {
	st := d.store.Outbox(d.key)
	d.peak = max(d.peak, st.Bytes)
	if d.policy == "drop_oldest" {
		for over := st.Bytes - d.quota; over > 0; {
			items, err := d.store.ReadOutbox(d.key, d.cursor, d.rows, false)
			if err != nil || len(items) == 0 {
				return
			}
			k, freed := 0, int64(0)
			for k < len(items) && freed < over {
				freed += int64(items[k].Size)
				k++
			}
			d.remove(items[:k], false, true)
			d.dropped.Add(uint64(k))
			d.cursor = items[k-1].Seq
			over -= freed
		}
		return
	}
	// reject: refuse input from the quota down to 90% of it.
	switch {
	case st.Bytes >= d.quota:
		if !d.full.Load() {
			d.logger.Warn("output outbox is full; refusing input until it drains", "output", d.key, "bytes", st.Bytes, "quota", d.quota)
		}
		d.setFull(true)
	case st.Bytes < d.quota*9/10:
		d.setFull(false)
	}
}

// expireHead drops expired rows at the head while nothing can be sent.
func (d *drainer) expireHead() {
	items, err := d.store.ReadOutbox(d.key, d.cursor, d.rows, false)
	if err == nil && len(items) > 0 {
		d.expire(items, true)
	}
}

func (d *drainer) setFull(full bool) {
	if d.full.Swap(full) == full {
		return
	}
	if full {
		d.o.full.Add(1)
	} else {
		d.o.full.Add(-1)
	}
}

// remove takes rows out of the outbox: dead letters are moved at once;
// rows from the head (head true: the cursor moves past them) are only
// forgotten, and deleted later in one range by flushDeletes; other rows
// (live-first batches from the tail) are deleted one by one.
func (d *drainer) remove(items []state.OutboxItem, dead, head bool) {
	var err error
	switch {
	case dead:
		err = d.store.DeadLetterOutbox(d.key, items)
	case head:
		d.store.ForgetOutbox(d.key, items)
	default:
		err = d.store.DeleteOutbox(d.key, items)
	}
	if err != nil {
		d.fail(err)
	}
}

// flushDeletes deletes the rows behind the cursor: at most every 200 ms or
// 4096 rows, and always when forced (idle, stopping).
func (d *drainer) flushDeletes(force bool) {
	if d.cursor <= d.deletedTo {
		return
	}
	if !force && d.cursor-d.deletedTo < 4096 && time.Since(d.deletedAt) < 200*time.Millisecond {
		return
	}
	if err := d.store.DeleteOutboxRange(d.key, d.deletedTo+1, d.cursor); err != nil {
		d.fail(err)
		return
	}
	d.deletedTo, d.deletedAt = d.cursor, time.Now()
}

// compactAfter is the backlog that, once delivered, makes the drainer
// compact: rows that streamed through never left the memtable, but a
// backlog this large reached table files.
const compactAfter = 16 << 20

// compact gives disk back once the outbox is empty after a large backlog.
func (d *drainer) compact() {
	if d.peak < compactAfter || d.store.Outbox(d.key).Entries > 0 {
		return
	}
	if err := d.store.CompactOutbox(d.key); err != nil {
		d.fail(err)
		return
	}
	d.peak = 0
}
