package actors

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Errors.
var (
	ErrClosed        = errors.New("actors: gateway is closed")
	ErrUnknownJob    = errors.New("actors: unknown job")
	ErrUnknownDevice = errors.New("actors: unknown device")
	ErrBadRequest    = errors.New("actors: bad request")
)

// Config configures a Gateway. Zero fields take the defaults in their
// comments. A Config must not change after New.
type Config struct {
	// Partitions is the number of partition actors (default 64).
	Partitions int
	// BatchSize is the most events in one message to a partition (default 256).
	BatchSize int
	// BatchDelay is how long a partial batch may wait (default 5ms).
	BatchDelay time.Duration
	// MailboxSize bounds each partition's mailbox, in batches (default 64).
	MailboxSize int
	// Tick is how often idle watermarks advance (default 1s).
	Tick time.Duration
	// Now returns the arrival time of events (default time.Now; tests
	// substitute a clock they control).
	Now func() time.Time
	// DeviceSilence: a device that sends nothing this long is offline
	// (default 60s).
	DeviceSilence time.Duration
	// PassivateAfter: an offline device is dropped from memory after this
	// long without messages (default 10m; its desired properties are kept).
	PassivateAfter time.Duration
	// DeviceActors: the most device actors activated for telemetry
	// summaries (default 50,000, about 1.3 KiB each), shared out
	// equally among the partitions (at least one each); the devices past
	// it keep their records in their partition. Actors activated for a
	// twin write or a direct method call may go past it until the next
	// sweep (deviceactor.go).
	DeviceActors int
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// MaxPayloadBytes: a larger message from any source (embedded broker,
	// external broker) is acknowledged, not ingested, and dead-lettered
	// with its first bytes (0: no limit).
	MaxPayloadBytes int

	// Store makes the gateway durable (D1-D4): events are logged before
	// Ingest returns and partitions checkpoint; the sink's outbox must
	// then be this store (Outputs.EnableOutbox). Nil: in memory.
	Store *state.Store
	// SyncInterval: the ingest log is synced at most once per interval
	// (group commit; default 2ms).
	SyncInterval time.Duration
	// CheckpointInterval: how often partitions checkpoint (default 1s).
	CheckpointInterval time.Duration
	// MaxQueuedBytes bounds the input a durable gateway holds between
	// taking it and applying it (queued for the log, being committed,
	// waiting for its partition): above it, device input waits in its
	// connection, QoS 0 included (default 64 MiB).
	MaxQueuedBytes int64
	// SequenceField names a payload field with a per-device sequence
	// number. An event whose number the device's input has had within
	// the 1,024 numbers below its highest is a duplicate (dropped,
	// counted). One that arrives late but was not seen is taken (input
	// parked during a network split arrives after newer input of the same
	// device); one 1,024 or more below the highest cannot be checked and
	// is taken too, counted as unverified. Nothing unseen is dropped.
	SequenceField string
	// Clustered: the gateway will join a cluster (SetCluster): its
	// partitions serve nothing until Serve. A standalone gateway serves
	// every partition.
	Clustered bool
	// Name is the gateway's name: the origin of the jobs deployed and
	// removed through it, in the job catalog.
	Name string
	// DataRoots confine the reference files jobs read (nil: anywhere; the
	// gateway command always sets them).
	DataRoots *DataRoots
	// ResetDamaged: a partition whose checkpoint or log cannot be read
	// starts without it (its windows and unreplayed events are lost,
	// logged and counted) instead of stopping recovery with an error.
	ResetDamaged bool
	// Disk guard (durable mode): input is refused while the store takes
	// more than MaxStoreBytes (0: no quota) or its file system has less
	// than MinFreeBytes free (0: DefaultMinFreeBytes).
	MaxStoreBytes uint64
	MinFreeBytes  uint64
}

func (c *Config) ensureDefaults() {
	if c.Partitions <= 0 {
		c.Partitions = config.DefaultPartitions
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.BatchDelay <= 0 {
		c.BatchDelay = 5 * time.Millisecond
	}
	if c.MailboxSize <= 0 {
		c.MailboxSize = 64
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DeviceSilence <= 0 {
		c.DeviceSilence = time.Minute
	}
	if c.DeviceActors <= 0 {
		c.DeviceActors = 50_000
	}
	if c.PassivateAfter <= 0 {
		c.PassivateAfter = 10 * time.Minute
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = config.DefaultSyncInterval
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = config.DefaultCheckpointInterval
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
}

// Sink is where a gateway's output rows go: partitions give it each row
// (Encode) and append what it returns to its outbox, in one batch per
// partition batch, then Notify it. Outputs is the Sink of a gateway: its
// outbox is the store's in durable mode and a state.MemOutbox otherwise,
// and one drainer per output delivers from it (outbox.go). Rows adapts a
// RowWriter (tests, benchmarks, embedding).
type Sink interface {
	// Encode builds the outbox row of a row a job emitted; false when the
	// output has no sink here, or the sink took the row itself. Called
	// from job actors, concurrently for different jobs and partitions,
	// with id rowIDPlaceholder: the partition numbers the row afterwards
	// and sets its id with setRowID, so an encoder that writes the id into
	// the payload does it with appendRowWithID. rec is borrowed for the
	// call.
	Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool)
	// Outbox is where the rows go; nil when Encode never returns one.
	Outbox() state.Outbox
	// Notify says rows were added to the outbox.
	Notify()
	// Admit returns ErrOverQuota while input must be refused.
	Admit() error
	// Settle waits until the rows in the outbox have left it, or their
	// output cannot take them now (Drain in memory mode).
	Settle(ctx context.Context) error
}

// RowWriter receives every output row from the job actor that made it,
// concurrently for different jobs and partitions, and before the
// partition has numbered it: rows of different jobs come in any order,
// and a row of an event the job then panicked on was written all the
// same. rec is borrowed for the call.
type RowWriter interface {
	Write(job, output string, ts int64, rec *value.Record)
}

// Rows makes w a Sink that keeps no outbox: each row is written as its
// job emits it (tests, benchmarks, embedding).
func Rows(w RowWriter) Sink { return rowsSink{w} }

type rowsSink struct{ w RowWriter }

func (s rowsSink) Encode(job, output string, ts int64, rec *value.Record, _ string) (state.OutRow, bool) {
	s.w.Write(job, output, ts, rec)
	return state.OutRow{}, false
}

func (rowsSink) Outbox() state.Outbox { return nil }
func (rowsSink) Notify()              {}
func (rowsSink) Admit() error         { return nil }

func (rowsSink) Settle(context.Context) error { return nil }

// Stats are gateway-wide counters.
type Stats struct {
	EventsIn     uint64
	RowsOut      uint64
	DeadLettered uint64
}

// Gateway hosts deployed jobs on partition actors.
type Gateway struct {
	cfg      Config
	sink     Sink         // nil: rows are dropped
	box      state.Outbox // the sink's outbox (nil: none)
	dead     DeadLetterSink
	system   *actor.ActorSystem
	parts    []*actor.PID
	batchers []*batcher
	mu       sync.Mutex // guards jobs
	jobs     map[string]*deployedJob
	closed   atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
	eventsIn atomic.Uint64
	rowsOut  atomic.Uint64
	dead1    atomic.Uint64
	pub      atomic.Pointer[Publisher]
	queued   []atomic.Int64 // batches sent to each partition and not yet processed
	started  []atomic.Bool  // partition actor started once (later Starts are restarts)
	restarts atomic.Uint64
	// jobRestarts counts job actors restarted alone after a panic.
	jobRestarts atomic.Uint64

	// Device actors (deviceactor.go): live now, activated and passivated
	// since start.
	deviceActorsLive   atomic.Int64
	deviceActivations  atomic.Uint64
	devicePassivations atomic.Uint64
	deviceFailures     atomic.Uint64 // device actor panics (the message dropped)
	// Direct methods (methods.go): the last request id, calls written to
	// devices, calls not answered in time, answers no call waited for.
	methodRID          atomic.Uint64
	methodCalls        atomic.Uint64
	methodTimeouts     atomic.Uint64
	methodStrayAnswers atomic.Uint64
	methodsPending     atomic.Int64 // calls waiting for an answer, all devices
	desiredMu          sync.Mutex   // SetDesired: one write at a time
	// jobsStopped counts jobs stopped over their memory budget.
	jobsStopped atomic.Uint64
	// stageSeconds: the partitions' sampled per-row stage times
	// (metrics.go).
	stageSeconds *prometheus.HistogramVec

	// Durable mode (durable.go).
	store            *state.Store
	disk             *diskGuard // nil: not durable
	log              *logWriter
	ready            atomic.Bool // recovered; Ingest accepts events
	fwdLogged        []atomic.Uint64
	quietUntil       []atomic.Int64 // per partition, arrival ticks (quiet.go)
	redoMu           sync.Mutex
	redo             []fwdRedo // by source partition (fwdredo.go)
	forwardRedos     atomic.Uint64
	debugForwards    bool         // partition 0 logs the forwards it drops by position
	realClock        bool         // Config.Now is the wall clock: the clock actor may sleep while every partition is quiet
	clockPID         *actor.PID   // the clock actor (clock.go)
	clockMu          sync.RWMutex // sendClock against stopClock
	clockStopped     bool
	quietSleeps      atomic.Uint64 // times the clock actor slept with every partition quiet
	checkpoints      atomic.Uint64
	replayedEntries  atomic.Uint64
	replayedRows     atomic.Uint64
	duplicates       atomic.Uint64
	seqUnverified    atomic.Uint64 // taken, too old for the sequence window to check
	staleCheckpoints atomic.Uint64 // take-overs that found a checkpoint behind the safe one
	forwardResends   atomic.Uint64
	restoreFailures  atomic.Uint64
	logErrors        atomic.Uint64
	outboxErrors     atomic.Uint64
	refused          atomic.Uint64
	skippedPoison    atomic.Uint64
	damagedReset     atomic.Uint64
	poisonMu         sync.Mutex
	poison           map[[2]uint64]*poisonEntry // (partition, seq) -> crashes while applying it
	// jobPoison counts a job's panics on one log entry (jobrestart.go);
	// jobPoisoned, how many entries are poison for some job.
	jobPoison    map[jobEntry]int
	jobPoisoned  atomic.Int64
	catalogMu    sync.Mutex           // recordJob's read and write of a version
	panics       atomic.Uint64        // crashes recorded in poison: poisoned takes no lock until the first
	replayDeaths atomic.Uint64        // replays the process ended in (replayguard.go)
	journal      *state.ReplayJournal // nil without a store
	killOn       []byte               // fault injection (fault.go)
	ingestWaits  atomic.Uint64        // device input that waited for the log writer (admit)

	// Clustered mode (cluster.go); nil otherwise.
	cl *clusterState
}

// Restarts counts partition actors restarted by their supervisor.
func (g *Gateway) Restarts() uint64 { return g.restarts.Load() }

// JobRestarts is how many times a job actor was restarted alone after it
// panicked (rebuilt from the checkpoint and log when durable).
func (g *Gateway) JobRestarts() uint64 { return g.jobRestarts.Load() }

// send hands a batch to a partition, counting it until processed (the
// mailbox depth, which protoactor does not expose).
func (g *Gateway) send(p int, b *eventBatch) {
	g.queued[p].Add(1)
	g.system.Root.Send(g.parts[p], b)
}

// MailboxDepths returns the batches waiting for each partition.
func (g *Gateway) MailboxDepths() []int64 {
	out := make([]int64, len(g.queued))
	for i := range g.queued {
		out[i] = g.queued[i].Load()
	}
	return out
}

// SetPublisher sets where device twin updates are published.
func (g *Gateway) SetPublisher(p Publisher) { g.pub.Store(&p) }

func (g *Gateway) publisher() Publisher {
	if p := g.pub.Load(); p != nil {
		return *p
	}
	return nil
}

type deployedJob struct {
	job         *pb.Job
	plan        *pb.Plan
	opts        exec.Options
	refs        map[string][]*value.Record // parsed once; SetReference copies
	partitioned bool                       // by device (A4)
	// readsMeta: inputs (lower case) whose events carry their metadata.
	readsMeta map[string]bool
	// Memory budget (budget.go): the state estimate of each partition,
	// and why the job was stopped (nil: running).
	budget  int64
	mem     []atomic.Int64
	stopped atomic.Pointer[string]
	// What its job actors did (JobStatus): restarts after a panic, and
	// the time spent applying work.
	restarts  atomic.Uint64
	workNanos atomic.Int64
}

// New starts a gateway with no jobs. A durable gateway (cfg.Store set)
// refuses input until Recover has run; its sink's outbox must be the
// store.
func New(cfg Config, sink Sink, dead DeadLetterSink) *Gateway {
	realClock := cfg.Now == nil
	cfg.ensureDefaults()
	g := &Gateway{cfg: cfg, sink: sink, dead: dead, system: newActorSystem(cfg.Logger), jobs: map[string]*deployedJob{}, stop: make(chan struct{}),
		realClock: realClock,
		queued:    make([]atomic.Int64, cfg.Partitions), quietUntil: make([]atomic.Int64, cfg.Partitions), started: make([]atomic.Bool, cfg.Partitions), stageSeconds: newStageSeconds(), killOn: faultKillOn()}
	g.debugForwards = cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	g.methodRID.Store(uint64(time.Now().UnixNano()))
	if f := jobPanicFault(); f != nil {
		jobFault = f // process-wide: the variable is for gateway processes under test
		cfg.Logger.Warn("fault injection: job actors panic on events that contain a marker", "variable", jobPanicOnEnv)
	}
	if sink != nil {
		g.box = sink.Outbox()
	}
	if cfg.Store != nil && g.box != nil && g.box != state.Outbox(cfg.Store) {
		cfg.Logger.Warn("durable gateway whose outputs keep their outbox in memory: rows are lost in a crash (Outputs.EnableOutbox)")
	}
	if cfg.Store != nil {
		g.store = cfg.Store
		g.fwdLogged = make([]atomic.Uint64, cfg.Partitions)
		g.redo = make([]fwdRedo, cfg.Partitions)
		g.log = newLogWriter(g)
		if j, err := cfg.Store.OpenReplayJournal(); err != nil {
			cfg.Logger.Warn("replay journal not opened; a log entry that ends the process would not be found", "error", err)
		} else {
			g.journal = j
		}
		floor := cfg.MinFreeBytes
		if floor == 0 {
			floor = DefaultMinFreeBytes
		}
		g.disk = &diskGuard{store: cfg.Store, quota: cfg.MaxStoreBytes, floor: floor, logger: cfg.Logger}
		g.disk.check()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.disk.run(g.stop)
		}()
	} else {
		g.ready.Store(true)
	}
	supervisor := restartPolicy()
	for i := 0; i < cfg.Partitions; i++ {
		id := i
		props := actor.PropsFromProducer(func() actor.Actor { return &partition{g: g, id: id} },
			actor.WithMailbox(actor.Bounded(cfg.MailboxSize)), actor.WithSupervisor(supervisor), actor.WithGuardian(supervisor))
		g.parts = append(g.parts, g.system.Root.Spawn(props))
		g.batchers = append(g.batchers, &batcher{})
	}
	g.startClock()
	return g
}

// Deploy compiles a job and starts it on every partition, replacing a job
// of the same name. Other jobs are undisturbed.
func (g *Gateway) Deploy(ctx context.Context, job *pb.Job) error {
	if g.closed.Load() {
		return ErrClosed
	}
	// One parse: the checks and the plan come from the same pass.
	p, err := config.CompileJob(job)
	if err != nil {
		return err
	}
	opts, err := config.ExecOptions(job)
	if err != nil {
		return fmt.Errorf("actors: job %q: %w", job.Name, err)
	}
	d := &deployedJob{job: job, plan: p, opts: opts, partitioned: partitionedByDevice(p, deviceKeyField(job)),
		budget: DefaultJobStateBytes, mem: make([]atomic.Int64, len(g.parts)), readsMeta: map[string]bool{}}
	for _, in := range p.Inputs {
		if in.Metadata || in.IothubProperties {
			d.readsMeta[strings.ToLower(in.Name)] = true
		}
	}
	if job.MaxStateBytes > 0 {
		d.budget = int64(job.MaxStateBytes)
	}
	for _, in := range job.Inputs {
		if in.ReferenceFile != "" {
			rows, err := readReference(g.cfg.DataRoots, in.ReferenceFile)
			if err != nil {
				return fmt.Errorf("actors: job %q reference %q: %w", job.Name, in.Name, err)
			}
			if d.refs == nil {
				d.refs = map[string][]*value.Record{}
			}
			d.refs[in.Name] = rows
		}
	}
	// Compile once here so errors surface to the caller, not in actors.
	if _, err := d.newExecutor(g, -1, nil); err != nil {
		return fmt.Errorf("actors: job %q: %w", job.Name, err)
	}
	if err := g.recordJob(&pb.JobUpdate{Job: job}); err != nil {
		return err
	}
	g.mu.Lock()
	g.jobs[job.Name] = d
	g.mu.Unlock()
	if err := g.broadcast(ctx, &deployMsg{job: d}); err != nil {
		return err
	}
	// The new job's state starts here: a checkpoint now keeps a replay
	// from feeding it events that came before it (D2).
	if g.ready.Load() {
		return g.Checkpoint(ctx)
	}
	return nil
}

// recordJob writes a deploy or removal made through this standalone
// durable gateway to the job catalog, with the next version of its name
// (state/jobs.go). In a cluster the node writes the catalog, with the
// versions the gateways agree on; before Recover the jobs deployed are the
// catalog's own and the configuration file's, which is read at each start.
func (g *Gateway) recordJob(u *pb.JobUpdate) error {
	if g.store == nil || !g.ready.Load() || g.cfg.Clustered {
		return nil
	}
	name := state.JobUpdateName(u)
	g.catalogMu.Lock() // two changes of one name must not take one version
	defer g.catalogMu.Unlock()
	prev, _, err := g.store.JobUpdate(name)
	if err != nil {
		return fmt.Errorf("actors: job %q: %w", name, err)
	}
	u.Version, u.Origin = prev.GetVersion()+1, g.cfg.Name
	if err := g.store.SaveJobUpdate(u); err != nil {
		return fmt.Errorf("actors: job %q: %w", name, err)
	}
	return nil
}

// RestoreJobs deploys the jobs of a durable gateway's catalog (those
// deployed through the admin API before a restart), before Recover.
func (g *Gateway) RestoreJobs(ctx context.Context) ([]*pb.Job, error) {
	if g.store == nil {
		return nil, nil
	}
	jobs, err := g.store.CatalogJobs()
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if err := g.Deploy(ctx, j); err != nil {
			return nil, fmt.Errorf("actors: job %q from the catalog: %w", j.Name, err)
		}
	}
	return jobs, nil
}

// Remove stops a job on every partition.
func (g *Gateway) Remove(ctx context.Context, name string) error {
	g.mu.Lock()
	_, ok := g.jobs[name]
	delete(g.jobs, name)
	g.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	if err := g.recordJob(&pb.JobUpdate{Removed: name}); err != nil {
		return err
	}
	if err := g.broadcast(ctx, &removeMsg{name: name}); err != nil {
		return err
	}
	// Once no partition runs the job: its series would stay forever.
	g.stageSeconds.DeletePartialMatch(prometheus.Labels{"job_name": name})
	if g.ready.Load() {
		return g.Checkpoint(ctx)
	}
	return nil
}

// Jobs lists deployed jobs by name.
func (g *Gateway) Jobs() []*pb.Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*pb.Job, 0, len(g.jobs))
	for _, d := range g.jobs {
		out = append(out, d.job)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (g *Gateway) broadcast(ctx context.Context, msg any) error {
	g.flushAll()
	if g.log != nil {
		// Everything queued reaches the partitions before msg.
		g.log.sync()
	}
	// Partition 0 last: the others forward events to it (A4), and those
	// must be in its mailbox before msg.
	for i := range g.parts {
		pid := g.parts[(i+1)%len(g.parts)]
		f := g.system.Root.RequestFuture(pid, msg, timeoutOf(ctx))
		if _, err := f.Result(); err != nil {
			return fmt.Errorf("actors: partition %s: %w", pid.Id, err)
		}
	}
	return nil
}

func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return 30 * time.Second
}

// Ingest hands one event for every job that reads input to its device's
// partition (A2). It blocks while that partition is full (A3).
func (g *Gateway) Ingest(input, deviceID string, payload []byte) error {
	return g.ingest("", input, deviceID, payload)
}

// IngestTopic routes an MQTT message to the job inputs whose topic filter
// matches, with the device id each input takes from the topic or payload.
// It reports how many inputs took the message (0: no job listens there).
// In durable mode it returns once the message is logged (D1).
func (g *Gateway) IngestTopic(topic string, payload []byte) (int, error) {
	n, c, err := g.IngestTopicAsync(topic, payload)
	if err != nil {
		return 0, err
	}
	if err := c.Wait(); err != nil {
		return 0, err
	}
	return n, nil
}

// Commit tells when ingested events are durable (Wait); commits complete
// in the order they were made.
type Commit struct{ gen *commitGen }

// Wait blocks until the events are logged (at once when not durable).
func (c Commit) Wait() error { return c.gen.wait() }

// IngestTopicAsync is IngestTopic without the wait for durability: the
// caller acknowledges the message once the Commit's Wait returns nil.
func (g *Gateway) IngestTopicAsync(topic string, payload []byte) (int, Commit, error) {
	return g.IngestTopicProps(topic, payload, nil)
}

// IngestTopicProps is IngestTopicAsync with the message's MQTT 5 user
// properties (borrowed). Only for inputs whose job reads event metadata
// (GetMetadataPropertyValue, iothub_properties) are they, and the
// topic's property bag ($.mid, $.cid and application properties after
// devices/{id}/messages/events/), kept with the event and logged; other
// inputs pay nothing for them.
func (g *Gateway) IngestTopicProps(topic string, payload []byte, props []exec.UserProperty) (int, Commit, error) {
	if !g.ready.Load() {
		// Before Recover the jobs may not all be deployed yet: a topic
		// that looks unrouted now would be acknowledged and dropped (a
		// restarted gateway's broker takes publishes before its jobs are
		// back; the kill -9 tests lost events that way).
		return 0, Commit{}, ErrNotReady
	}
	g.mu.Lock()
	var targets []routeTarget
	for _, d := range g.jobs {
		if d.stopped.Load() != nil {
			continue // over its memory budget (budget.go)
		}
		for _, in := range d.job.Inputs {
			if in.ReferenceFile != "" || strings.EqualFold(in.Name, DevicesInput) || !matchTopic(topicFilter(in), topic) {
				continue
			}
			targets = append(targets, routeTarget{job: d.job.Name, input: in.Name, deviceFrom: in.DeviceId, meta: d.readsMeta[strings.ToLower(in.Name)]})
		}
	}
	g.mu.Unlock()
	// One event per device (inputs may take the device id from different
	// places), carrying every job input that reads the message: logged,
	// counted and checked for duplicates once however many jobs read it.
	// Its metadata goes with it when any of those jobs reads metadata.
	sort.Slice(targets, func(i, j int) bool {
		if targets[i].job != targets[j].job {
			return targets[i].job < targets[j].job
		}
		return targets[i].input < targets[j].input
	})
	byDevice := map[string][]routeTarget{}
	var devices []string
	for _, t := range targets {
		dev := deviceID(t.deviceFrom, topic, payload)
		if err := checkDeviceID(dev); err != nil {
			// Acknowledged and kept with its reason: a resend could never
			// succeed.
			g.deadLetterDeviceID(t, dev, payload, err)
			continue
		}
		if _, ok := byDevice[dev]; !ok {
			devices = append(devices, dev)
		}
		byDevice[dev] = append(byDevice[dev], routeTarget{job: t.job, input: t.input, meta: t.meta})
	}
	var gens []*commitGen
	var meta *pb.EventMetadata
	for _, dev := range devices {
		ts := byDevice[dev]
		ev := event{job: ts[0].job, input: ts[0].input, device: dev, payload: payload}
		if len(ts) > 1 {
			ev.job, ev.input, ev.targets = "", "", ts
		}
		for _, t := range ts {
			if t.meta {
				if meta == nil {
					meta = eventMetadata(topic, props)
				}
				ev.meta = meta
				break
			}
		}
		cg, err := g.enqueueEvent(ev)
		if err != nil {
			return 0, Commit{}, err
		}
		if cg != nil && (len(gens) == 0 || gens[len(gens)-1] != cg) {
			gens = append(gens, cg)
		}
	}
	return len(targets), Commit{joinCommits(gens)}, nil
}

// routeTarget is a job input a message goes to (deviceFrom: where that
// input takes the device id from, while routing; meta: the job reads the
// input's metadata).
type routeTarget struct {
	job, input, deviceFrom string
	meta                   bool
}

func (g *Gateway) ingest(job, input, deviceID string, payload []byte) error {
	gen, err := g.enqueue(job, input, deviceID, payload)
	if err != nil {
		return err
	}
	return gen.wait()
}

// enqueue routes one event; in durable mode the returned commit tells when
// it is logged (nil otherwise).
func (g *Gateway) enqueue(job, input, deviceID string, payload []byte) (*commitGen, error) {
	return g.enqueueEvent(event{job: job, input: input, device: deviceID, payload: payload})
}

// enqueueEvent stamps ev with its arrival time and routes it.
func (g *Gateway) enqueueEvent(ev event) (*commitGen, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkDeviceID(ev.device); err != nil {
		return nil, err
	}
	if !g.ready.Load() {
		return nil, ErrNotReady
	}
	if g.sink != nil {
		if err := g.sink.Admit(); err != nil {
			g.refused.Add(1)
			return nil, err
		}
	}
	if err := g.disk.admit(); err != nil {
		g.refused.Add(1)
		return nil, err
	}
	if g.log != nil {
		g.log.admit()
	}
	p := g.partitionOf(ev.device)
	ev.arrival = value.FromTime(g.cfg.Now())
	// Counted once stamped: whoever watches EventsIn (a test moving its
	// clock after each reading) must not see an event that has yet to
	// read the clock. An operator's write to a twin is not a device's.
	if ev.input != twinDesiredInput {
		g.eventsIn.Add(1)
	}
	if g.log != nil {
		if gen, ok := g.log.addServing(p, ev); ok {
			return gen, nil
		}
		return g.forwardEvent(p, ev), nil // served by another gateway (C4)
	}
	g.batchers[p].add(ev, g.cfg.BatchSize, func(b *eventBatch) { g.send(p, b) })
	return nil, nil
}

// joinCommits is one commit for several: done once each is, failed if
// any failed. (Log commits complete in order, but one can fail and a later
// one succeed: the last does not stand for all.)
func joinCommits(gens []*commitGen) *commitGen {
	if len(gens) == 0 {
		return nil
	}
	if len(gens) == 1 {
		return gens[0]
	}
	all := newCommitGen()
	close(all.sent)
	go func() {
		for _, g := range gens {
			if err := g.wait(); err != nil && all.err == nil {
				all.err = err
			}
		}
		close(all.done)
	}()
	return all
}

// wait returns once the commit is durable (at once for nil).
func (c *commitGen) wait() error {
	if c == nil {
		return nil
	}
	<-c.done
	return c.err
}

// Oversized reports whether payload is over Config.MaxPayloadBytes, and
// if so dead-letters it (kind "oversized", with source, usually the MQTT
// topic): the caller acknowledges it without ingesting it, since a resend
// could never succeed.
func (g *Gateway) Oversized(source string, payload []byte) bool {
	if g.cfg.MaxPayloadBytes <= 0 || len(payload) <= g.cfg.MaxPayloadBytes {
		return false
	}
	g.deadLetterOversized(source, payload, g.cfg.MaxPayloadBytes)
	return true
}

func (g *Gateway) deadLetterOversized(source string, payload []byte, limit int) {
	g.dead1.Add(1)
	if g.dead != nil {
		g.dead.DeadLetter(Rejected{Partition: -1, Source: source, DeadLetter: exec.DeadLetter{Kind: DeadLetterOversized,
			Reason: fmt.Sprintf("payload of %d bytes is over max_payload_bytes %d", len(payload), limit), Payload: payload}})
	}
}

// Dead-letter kinds of the gateway itself (the executor's are in exec).
const (
	DeadLetterOversized = "oversized"
	DeadLetterPoison    = "poison"
	DeadLetterDeviceID  = "bad_device_id"
)

// MaxDeviceIDBytes bounds a device id: ids are kept in every partition's
// device map and listed by the admin API and the console. A message with
// a longer one (from its topic or a payload field) is dead-lettered; any
// other way in (Ingest, a twin patch, desired properties) refuses it.
// Azure IoT Hub allows 128.
const MaxDeviceIDBytes = 256

// checkDeviceID refuses a device id over MaxDeviceIDBytes.
func checkDeviceID(id string) error {
	if len(id) > MaxDeviceIDBytes {
		return fmt.Errorf("%w: device id of %d bytes is over the limit of %d", ErrBadRequest, len(id), MaxDeviceIDBytes)
	}
	return nil
}

func (g *Gateway) deadLetterDeviceID(t routeTarget, dev string, payload []byte, why error) {
	g.dead1.Add(1)
	if g.dead != nil {
		g.dead.DeadLetter(Rejected{Job: t.job, Partition: -1, Source: strings.ToValidUTF8(dev[:64], "") + "...",
			DeadLetter: exec.DeadLetter{Input: t.input, Kind: DeadLetterDeviceID, Reason: why.Error(), Payload: payload}})
	}
}

func (g *Gateway) partitionOf(deviceID string) int { return PartitionOf(deviceID, len(g.parts)) }

// PartitionOf is the partition of a device among n (FNV-1a of its id, mod n).
func PartitionOf(deviceID string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(deviceID))
	return int(h.Sum32() % uint32(n))
}

// Drain waits until every event ingested so far has been processed; in
// memory mode also until their rows have been delivered, or their output
// cannot take them now (Sink.Settle).
func (g *Gateway) Drain(ctx context.Context) error {
	if err := g.broadcast(ctx, &drainMsg{}); err != nil || g.store != nil || g.sink == nil {
		return err
	}
	return g.sink.Settle(ctx)
}

// FlushWindows ends the input of every job: all open windows are emitted.
// For replays, tests and the end of a demo; a running gateway never needs it.
func (g *Gateway) FlushWindows(ctx context.Context) error {
	return g.broadcast(ctx, &flushMsg{})
}

// JobCounters sums every partition's executor counters per job.
func (g *Gateway) JobCounters(ctx context.Context) (map[string]exec.Counters, error) {
	st, err := g.jobStatus(ctx)
	return st.counters, err
}

// JobWatermarks returns each job's lowest watermark over all partitions
// (jobs that have seen no event are absent).
func (g *Gateway) JobWatermarks(ctx context.Context) (map[string]int64, error) {
	st, err := g.jobStatus(ctx)
	return st.watermarks, err
}

// StageTimes returns, per job and stage, the largest of the partitions'
// mean sampled per-row stage times.
func (g *Gateway) StageTimes(ctx context.Context) (map[string]map[string]time.Duration, error) {
	st, err := g.jobStatus(ctx)
	return st.stages, err
}

// jobStatus is every job's counters, watermark and stage times, merged over
// the partitions in one round-trip each.
type jobStatus struct {
	counters   map[string]exec.Counters
	watermarks map[string]int64
	stages     map[string]map[string]time.Duration
}

func (g *Gateway) jobStatus(ctx context.Context) (jobStatus, error) {
	st := jobStatus{counters: map[string]exec.Counters{}, watermarks: map[string]int64{}, stages: map[string]map[string]time.Duration{}}
	for _, pid := range g.parts {
		res, err := g.system.Root.RequestFuture(pid, &countersMsg{}, timeoutOf(ctx)).Result()
		if err != nil {
			return jobStatus{}, fmt.Errorf("actors: partition %s: %w", pid.Id, err)
		}
		reply := res.(*countersReply)
		for job, wm := range reply.watermark {
			if old, ok := st.watermarks[job]; !ok || wm < old {
				st.watermarks[job] = wm
			}
		}
		for job, c := range reply.byJob {
			t := st.counters[job]
			t.EventsIn += c.EventsIn
			t.EventsOut += c.EventsOut
			t.DeadLettered += c.DeadLettered
			t.LateAdjusted += c.LateAdjusted
			t.LateDropped += c.LateDropped
			t.OutOfOrderAdjusted += c.OutOfOrderAdjusted
			t.OutOfOrderDropped += c.OutOfOrderDropped
			t.EarlyDropped += c.EarlyDropped
			st.counters[job] = t
		}
		for job, stages := range reply.stages {
			if st.stages[job] == nil {
				st.stages[job] = map[string]time.Duration{}
			}
			for name, d := range stages {
				st.stages[job][name] = max(st.stages[job][name], d)
			}
		}
	}
	return st, nil
}

// Job returns a deployed job and its plan.
func (g *Gateway) Job(name string) (*pb.Job, *pb.Plan, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.jobs[name]
	if !ok {
		return nil, nil, false
	}
	return d.job, d.plan, true
}

// Backlog counts the events waiting in the router's batches (protoactor
// does not expose mailbox depths).
func (g *Gateway) Backlog() int {
	n := 0
	for _, b := range g.batchers {
		b.mu.Lock()
		n += len(b.events)
		b.mu.Unlock()
	}
	return n
}

// Stats returns the counters.
func (g *Gateway) Stats() Stats {
	return Stats{EventsIn: g.eventsIn.Load(), RowsOut: g.rowsOut.Load(), DeadLettered: g.dead1.Load()}
}

// Close stops the gateway: pending batches are processed, then the actors
// stop. Open windows are not flushed (they belong to durable state).
func (g *Gateway) Close(ctx context.Context) error {
	if g.closed.Swap(true) {
		return nil
	}
	close(g.stop)
	g.stopClock()
	g.wg.Wait()
	err := g.broadcast(ctx, &drainMsg{})
	if g.store != nil && g.ready.Load() {
		// A clean shutdown leaves nothing to replay.
		err = errors.Join(err, g.Checkpoint(ctx))
	}
	if g.log != nil {
		g.log.close()
	}
	for _, pid := range g.parts {
		_, _ = g.system.Root.StopFuture(pid).Result()
	}
	g.system.Shutdown()
	if jerr := g.journal.Close(); jerr != nil {
		err = errors.Join(err, jerr)
	}
	return err
}

func (g *Gateway) flushAll() {
	for i, b := range g.batchers {
		b.take(func(batch *eventBatch) { g.send(i, batch) })
	}
}

// tick advances idle watermarks and sweeps devices on every partition.
func (g *Gateway) tick() {
	g.flushAll()
	if g.log != nil {
		// Logged, so a replay sees ticks where the partition saw them (D2).
		if !g.ready.Load() || g.closed.Load() {
			return
		}
		now := value.FromTime(g.cfg.Now())
		for p := range g.parts {
			if !g.quiet(p, now) {
				g.log.addServing(p, event{tick: true, arrival: now})
			}
		}
		return
	}
	now := value.FromTime(g.cfg.Now())
	msg := &tickMsg{now: now}
	for i, pid := range g.parts {
		if !g.quiet(i, now) {
			g.system.Root.Send(pid, msg)
		}
	}
}

// batcher collects a partition's events between sends.
type batcher struct {
	mu     sync.Mutex
	events []event
}

// add appends e and, once the batch has size events, sends it (under the
// lock, as take does).
func (b *batcher) add(e event, size int, send func(*eventBatch)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, e)
	if len(b.events) < size {
		return
	}
	batch := &eventBatch{events: b.events}
	b.events = make([]event, 0, size)
	send(batch)
}

// take sends the partial batch, if any. Like add, it sends under the
// lock: batches must reach the partition in the order they were cut, or a
// timer's partial batch sent late lands behind newer events, which the
// partition would take as out of order.
func (b *batcher) take(send func(*eventBatch)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) == 0 {
		return
	}
	batch := &eventBatch{events: b.events}
	b.events = nil
	send(batch)
}

// deviceKeyField is the payload field that carries the device id: the
// input's field:NAME, or deviceId for topic-based ids (the IoT Hub
// payload convention).
func deviceKeyField(job *pb.Job) string {
	for _, in := range job.Inputs {
		if f, ok := strings.CutPrefix(in.DeviceId, "field:"); ok {
			return f
		}
	}
	return "deviceId"
}

// partitionedByDevice reports whether every stateful stage of a plan is
// keyed by the device field, so the job may run on every partition (A4).
func partitionedByDevice(p *pb.Plan, field string) bool {
	isDevice := func(e *pb.Expr) bool {
		f := e.GetField()
		return f != nil && len(f.Path) == 1 && strings.EqualFold(f.Path[0], field)
	}
	anyDevice := func(es []*pb.Expr) bool {
		for _, e := range es {
			if isDevice(e) {
				return true
			}
		}
		return false
	}
	if len(p.Inputs) > 1 || len(p.References) > 0 {
		return false
	}
	for _, st := range p.Stages {
		if len(st.Union) > 0 || st.Join != nil || st.Match != nil {
			return false
		}
		if st.Window != nil && !anyDevice(st.GroupKeys) {
			return false
		}
		for _, a := range st.Analytics {
			if !anyDevice(a.PartitionBy) {
				return false
			}
		}
	}
	return true
}
