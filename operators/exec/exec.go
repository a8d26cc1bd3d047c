package exec

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/udf"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Sentinel errors.
var (
	ErrUnknownInput = errors.New("exec: unknown input")
	ErrBadPlan      = errors.New("exec: invalid plan")
	ErrBadSnapshot  = errors.New("exec: invalid snapshot")
	ErrBadSource    = errors.New("exec: source number out of range")
)

// ArrivalIsEventTime tells Ingest that the event has no arrival time of its
// own (local runs over files): arrival is taken to be the event time, so
// the early and late policies never apply.
const ArrivalIsEventTime int64 = math.MinInt64

// Policy is what happens to an event outside a tolerance.
type Policy int

// Policies.
const (
	Adjust Policy = iota
	Drop
)

// ParsePolicy reads "adjust" or "drop".
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(s) {
	case "adjust", "":
		return Adjust, nil
	case "drop":
		return Drop, nil
	}
	return Adjust, fmt.Errorf("exec: unknown out-of-order policy %q (want adjust or drop)", s)
}

// Options configure an Executor. Zero values take the defaults named on
// each field; Options must not change after New.
type Options struct {
	// LateArrivalTolerance: events older than arrival minus this are late.
	// Default 5s; negative means 0.
	LateArrivalTolerance time.Duration
	// OutOfOrderTolerance: events are reordered within this bound. Default 0.
	OutOfOrderTolerance time.Duration
	// OutOfOrderPolicy applies to late and out-of-order events. Default Adjust.
	OutOfOrderPolicy Policy
	// EarlyArrivalTolerance: events more than this ahead of their arrival
	// are dropped. Default 5m, as in Stream Analytics.
	EarlyArrivalTolerance time.Duration
	// CompatLevel "1.0", "1.1" or "1.2" (default). 1.0 lower-cases output
	// field names.
	CompatLevel string
	// LowerCaseNames lower-cases every output field name, as Stream
	// Analytics on IoT Edge does. Implied by CompatLevel 1.0.
	LowerCaseNames bool
	// MaxDepth bounds JSON nesting (default value.DefaultMaxDepth).
	MaxDepth int
	// Emit receives every output row. rec is borrowed (X3).
	Emit func(output string, ts int64, rec *value.Record)
	// DeadLetter receives every rejected event. Optional.
	DeadLetter func(DeadLetter)
	// StageTime, if set, receives each sampled time of one row in a stage
	// (one row in 256, as StageTimes), for a histogram. Optional.
	StageTime func(stage string, d time.Duration)
}

// DeadLetter is an event the executor could not process.
type DeadLetter struct {
	Input   string
	Stage   string // empty when the input rejected it
	Kind    string // one of the DeadLetter* kinds, for counting
	Reason  string
	Payload []byte
}

// Kinds of DeadLetter: a short fixed word per cause, so that counters
// have a bounded set of labels (the Reason says the rest).
const (
	DeadLetterMalformed  = "malformed"        // not a JSON object
	DeadLetterWrongType  = "wrong_type"       // a field of the wrong type for the input's schema
	DeadLetterTimestamp  = "bad_timestamp"    // TIMESTAMP BY missing, not a time, or no arrival time
	DeadLetterKey        = "bad_key"          // OVER / PARTITION BY key cannot be computed
	DeadLetterExpression = "expression_error" // a clause failed on the row
	DeadLetterReference  = "reference_row"    // a reference data row was refused
	DeadLetterUDF        = "udf_error"        // a JavaScript function failed (threw, ran out of time, too large a result)
)

// DefaultLateArrival and the other defaults of Options.
const (
	DefaultLateArrival  = 5 * time.Second
	DefaultEarlyArrival = 5 * time.Minute
)

func (o *Options) ensureDefaults() error {
	if o.LateArrivalTolerance == 0 {
		o.LateArrivalTolerance = DefaultLateArrival
	}
	if o.LateArrivalTolerance < 0 {
		o.LateArrivalTolerance = 0
	}
	if o.OutOfOrderTolerance < 0 {
		o.OutOfOrderTolerance = 0
	}
	if o.EarlyArrivalTolerance == 0 {
		o.EarlyArrivalTolerance = DefaultEarlyArrival
	}
	switch o.CompatLevel {
	case "":
		o.CompatLevel = "1.2"
	case "1.0":
		o.LowerCaseNames = true
	case "1.1", "1.2":
	default:
		return fmt.Errorf("exec: unknown compatibility level %q (want 1.0, 1.1 or 1.2)", o.CompatLevel)
	}
	if o.Emit == nil {
		o.Emit = func(string, int64, *value.Record) {}
	}
	return nil
}

// Counters are cumulative event counts.
type Counters struct {
	EventsIn           uint64
	EventsOut          uint64
	DeadLettered       uint64
	LateAdjusted       uint64
	LateDropped        uint64
	OutOfOrderAdjusted uint64
	OutOfOrderDropped  uint64
	EarlyDropped       uint64
}

// row is one event or result flowing between nodes (X3: borrowed).
type row struct {
	ts  int64
	tl  int32
	rec *value.Record
	// meta is the event's metadata, from the input to the stage that
	// reads it (GetMetadataPropertyValue); nil when the input has none.
	meta *expr.Meta
	// analyzed: the stage's analytic functions were already evaluated on
	// the source row this one was expanded from (APPLY); their results are
	// in the stage's analyticSet.
	analyzed bool
}

// node receives rows in event-time order per timeline (X1).
type node interface {
	push(r *row)
	// advance promises that no row of timeline tl (all when tl < 0) with
	// a time below wm will follow.
	advance(tl int32, wm int64)
}

// Executor runs one plan.
type Executor struct {
	plan        *pb.Plan
	fingerprint string
	opts        Options
	late, ooo   int64 // ticks
	early       int64
	inputs      map[string]*inputOp
	refs        map[string]*refTable
	inputList   []*inputOp
	stages      []stageNode
	counters    Counters
	// udfs are the plan's functions by their name in expressions
	// ("udf.x", "uda.x"); env gives expressions the scalar ones.
	udfs map[string]*udf.Func
	env  expr.Env
}

// stageNode is a stage operator with optional state.
type stageNode interface {
	node
	stageName() string
	analytics() *analyticSet
	snapshot() *pb.StageState
	restore(*pb.StageState) error
}

// New compiles a plan.
func New(plan *pb.Plan, opts Options) (*Executor, error) {
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(plan)
	if err != nil {
		return nil, fmt.Errorf("exec: marshal plan: %w", err)
	}
	sum := sha256.Sum256(b)
	ex := &Executor{
		plan:        plan,
		fingerprint: hex.EncodeToString(sum[:16]),
		opts:        opts,
		late:        int64(opts.LateArrivalTolerance / 100),
		ooo:         int64(opts.OutOfOrderTolerance / 100),
		early:       int64(opts.EarlyArrivalTolerance / 100),
		inputs:      map[string]*inputOp{},
		refs:        map[string]*refTable{},
	}
	if err := ex.compileFunctions(); err != nil {
		return nil, err
	}
	sources := map[string]func(node){}
	for _, in := range plan.Inputs {
		op, err := newInput(ex, in)
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(in.Name)
		if _, dup := ex.inputs[key]; dup {
			return nil, fmt.Errorf("%w: input %q declared twice", ErrBadPlan, in.Name)
		}
		ex.inputs[key] = op
		ex.inputs[in.Name] = op
		ex.inputList = append(ex.inputList, op)
		sources[key] = func(n node) { op.out = append(op.out, n) }
	}
	byName := map[string]stageNode{}
	for _, st := range plan.Stages {
		key := strings.ToLower(st.Name)
		if _, dup := sources[key]; dup {
			return nil, fmt.Errorf("%w: stage %q has the name of another stage or input", ErrBadPlan, st.Name)
		}
		if len(st.Union) > 0 {
			u := newUnionOp(ex, st)
			for i, src := range st.Union {
				attach, ok := sources[strings.ToLower(src)]
				if !ok || byName[strings.ToLower(src)] == nil {
					return nil, fmt.Errorf("%w: union %q reads %q, which is not an earlier stage", ErrBadPlan, st.Name, src)
				}
				attach(unionInput{u: u, idx: i})
			}
			ex.stages = append(ex.stages, u)
			byName[key] = u
			sources[key] = u.addOut
			continue
		}
		attach, ok := sources[strings.ToLower(st.Source)]
		if !ok {
			return nil, fmt.Errorf("%w: stage %q reads %q, which is neither an input nor an earlier stage", ErrBadPlan, st.Name, st.Source)
		}
		n, err := newStage(ex, st)
		if err != nil {
			return nil, fmt.Errorf("exec: stage %q: %w", st.Name, err)
		}
		var entry node = n
		switch {
		case st.Match != nil:
			m, err := newMatchNode(ex, st, n)
			if err != nil {
				return nil, fmt.Errorf("exec: stage %q: %w", st.Name, err)
			}
			entry = m
			ex.stages = append(ex.stages, m)
		case len(st.Applies) > 0:
			if entry, err = newApplyNode(ex, st, n, n.analytics()); err != nil {
				return nil, fmt.Errorf("exec: stage %q: %w", st.Name, err)
			}
		case st.Join != nil && st.Join.Reference:
			on, err := ex.compile(st.Join.On)
			if err != nil {
				return nil, fmt.Errorf("exec: stage %q JOIN ON: %w", st.Name, err)
			}
			entry = &refJoinNode{ex: ex, stage: st.Name, table: strings.ToLower(st.Join.Source), alias: st.Join.Alias,
				left: st.Join.LeftOuter, on: on, an: n.analytics(), chain: newChainFields(st.Join), next: n}
		case st.Join != nil:
			j, err := newStreamJoin(ex, st, n)
			if err != nil {
				return nil, fmt.Errorf("exec: stage %q: %w", st.Name, err)
			}
			attachRight, ok := sources[strings.ToLower(st.Join.Source)]
			if !ok {
				return nil, fmt.Errorf("%w: stage %q joins %q, which is neither an input nor an earlier stage", ErrBadPlan, st.Name, st.Join.Source)
			}
			attachRight(joinInput{j: j, side: 1})
			entry = joinInput{j: j, side: 0}
			ex.stages = append(ex.stages, j)
		}
		attach(entry)
		ex.stages = append(ex.stages, n)
		byName[key] = n
		sources[key] = n.(interface{ addOut(node) }).addOut
	}
	for _, o := range plan.Outputs {
		attach, ok := sources[strings.ToLower(o.Stage)]
		if !ok || byName[strings.ToLower(o.Stage)] == nil {
			return nil, fmt.Errorf("%w: output %q reads unknown stage %q", ErrBadPlan, o.Name, o.Stage)
		}
		attach(&outputNode{ex: ex, name: o.Name})
	}
	return ex, nil
}

// Plan returns the plan.
func (ex *Executor) Plan() *pb.Plan { return ex.plan }

// Counters returns the counters.
func (ex *Executor) Counters() Counters { return ex.counters }

// Inputs returns the names of the plan's stream inputs.
func (ex *Executor) Inputs() []string {
	out := make([]string, len(ex.inputList))
	for i, in := range ex.inputList {
		out[i] = in.name
	}
	return out
}

func (ex *Executor) input(name string) (*inputOp, error) {
	if in := ex.lookupInput(name); in != nil {
		return in, nil
	}
	return nil, fmt.Errorf("%w: %q (the query reads %s)", ErrUnknownInput, name, strings.Join(ex.Inputs(), ", "))
}

// lookupInput finds an input by name, case-insensitively, without
// allocating: gateways ask every job about every event's input.
func (ex *Executor) lookupInput(name string) *inputOp {
	if in, ok := ex.inputs[name]; ok {
		return in
	}
	for _, in := range ex.inputList {
		if strings.EqualFold(in.name, name) {
			return in
		}
	}
	return nil
}

// Ingest processes one JSON event of an input. arrival is the arrival time
// in ticks, or ArrivalIsEventTime. Bad events are dead-lettered, not
// returned as errors (X5); the error is only for an unknown input.
func (ex *Executor) Ingest(input string, payload []byte, arrival int64) error {
	return ex.IngestFrom(input, noSource, payload, arrival)
}

// IngestFrom is Ingest for an input merged from several sources, each in
// its own event-time order (source >= 0, a small number): the input's
// watermark is the lowest of its sources that are not idle (sourceClock),
// so one source that is ahead does not make another's events late. An
// input without TIMESTAMP BY ignores the source.
func (ex *Executor) IngestFrom(input string, source int, payload []byte, arrival int64) error {
	in, err := ex.sourceInput(input, source)
	if err != nil {
		return err
	}
	in.ingest(payload, arrival, source, nil)
	return nil
}

// Meta is an event's metadata (GetMetadataPropertyValue, IoT Hub
// properties).
type Meta = expr.Meta

// UserProperty is one application property of an event's Meta.
type UserProperty = expr.UserProperty

// IngestMeta is IngestFrom with the event's metadata (source < 0: not a
// merged input). The executor fills in Enqueued (the arrival time) and
// Payload when they are unset, and may keep m until the event leaves the
// reorder buffer: m must not change after the call. Callers that would
// have to build m can ask ReadsMetadata first; m is ignored when the
// plan reads none.
func (ex *Executor) IngestMeta(input string, source int, payload []byte, arrival int64, m *Meta) error {
	in, err := ex.sourceInput(input, source)
	if err != nil {
		return err
	}
	in.ingest(payload, arrival, source, m)
	return nil
}

// ReadsMetadata reports whether the plan reads the input's event
// metadata (GetMetadataPropertyValue on it, or its IoT Hub properties).
func (ex *Executor) ReadsMetadata(input string) bool {
	in := ex.lookupInput(input)
	return in != nil && in.metadata
}

// MaxSources bounds the source numbers of IngestFrom: a timeline keeps a
// clock per number up to the highest seen.
const MaxSources = 1 << 16

func (ex *Executor) sourceInput(input string, source int) (*inputOp, error) {
	if source >= MaxSources {
		return nil, fmt.Errorf("%w: source %d (at most %d)", ErrBadSource, source, MaxSources-1)
	}
	return ex.input(input)
}

// IngestRecord processes an already decoded event. The record is borrowed.
func (ex *Executor) IngestRecord(input string, rec *value.Record, arrival int64) error {
	return ex.IngestRecordFrom(input, noSource, rec, arrival)
}

// IngestRecordFrom is IngestRecord for a merged input, as IngestFrom.
func (ex *Executor) IngestRecordFrom(input string, source int, rec *value.Record, arrival int64) error {
	in, err := ex.sourceInput(input, source)
	if err != nil {
		return err
	}
	ex.counters.EventsIn++
	in.ingestRecord(rec, arrival, nil, source, nil)
	return nil
}

// EventTime evaluates an input's TIMESTAMP BY on a payload without
// ingesting it (local runs sort inputs by it). ok is false for arrival-time
// inputs and for events whose timestamp cannot be read.
func (ex *Executor) EventTime(input string, payload []byte) (ticks int64, ok bool) {
	in, err := ex.input(input)
	if err != nil || in.tsEval == nil {
		return 0, false
	}
	var d value.Decoder
	rec, err := d.Decode(payload)
	if err != nil {
		return 0, false
	}
	t, err := in.eventTime(rec, 0)
	return t, err == nil
}

// AdvanceTime moves every input's idle watermark to now (ticks) minus the
// late-arrival tolerance, closing windows that can no longer change even
// when no events arrive.
func (ex *Executor) AdvanceTime(now int64) {
	for _, in := range ex.inputList {
		in.advanceIdle(now)
	}
}

// Flush ends the input: buffered events are released and every open
// window is emitted.
func (ex *Executor) Flush() {
	for _, in := range ex.inputList {
		in.flush()
	}
}

func (ex *Executor) deadLetter(dl DeadLetter) {
	ex.counters.DeadLettered++
	if ex.opts.DeadLetter != nil {
		ex.opts.DeadLetter(dl)
	}
}

// outputNode hands rows to Options.Emit.
type outputNode struct {
	ex    *Executor
	name  string
	lower value.Record
}

func (o *outputNode) push(r *row) {
	o.ex.counters.EventsOut++
	rec := r.rec
	if o.ex.opts.LowerCaseNames {
		o.lower.Names = o.lower.Names[:0]
		o.lower.Vals = append(o.lower.Vals[:0], rec.Vals...)
		for _, n := range rec.Names {
			o.lower.Names = append(o.lower.Names, strings.ToLower(n))
		}
		rec = &o.lower
	}
	o.ex.opts.Emit(o.name, r.ts, rec)
}

func (o *outputNode) advance(int32, int64) {}

// compileOpt compiles an optional expression: nil stays nil.
func (ex *Executor) compileOpt(e *pb.Expr) (expr.Eval, error) {
	if e == nil {
		return nil, nil
	}
	return ex.compile(e)
}

// compile compiles an expression of the plan, with its user-defined
// functions.
func (ex *Executor) compile(e *pb.Expr) (expr.Eval, error) {
	return expr.CompileEnv(e, &ex.env)
}

// HasEventTime reports whether an input has TIMESTAMP BY (application
// time) rather than arrival time.
func (ex *Executor) HasEventTime(input string) bool {
	in := ex.lookupInput(input)
	return in != nil && in.tsEval != nil
}

// Reads reports whether the plan reads a stream input of that name.
func (ex *Executor) Reads(input string) bool {
	return ex.lookupInput(input) != nil
}

// Watermark returns the lowest watermark over the inputs' timelines (the
// event time up to which results are final), and false before any event.
func (ex *Executor) Watermark() (int64, bool) {
	low, ok := int64(math.MaxInt64), false
	for _, in := range ex.inputList {
		for _, tl := range in.tls {
			if tl.wm != math.MinInt64 {
				low, ok = min(low, tl.wm), true
			}
		}
	}
	return low, ok
}

// StageTimes returns the mean sampled time one row spends in each stage
// (including the stages it feeds synchronously), for stages with samples.
func (ex *Executor) StageTimes() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, st := range ex.stages {
		var t *stageTiming
		switch s := st.(type) {
		case *selectOp:
			t = &s.timing
		case *aggOp:
			t = &s.timing
		default:
			continue
		}
		if d, ok := t.mean(); ok {
			out[st.stageName()] = d
		}
	}
	return out
}

// compileFunctions loads the plan's JavaScript functions, one runtime
// each for this executor.
func (ex *Executor) compileFunctions() error {
	ex.udfs = map[string]*udf.Func{}
	for _, fn := range ex.plan.Functions {
		f, err := udf.Compile(fn)
		if err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		prefix := "udf."
		if f.Aggregate() {
			prefix = "uda."
		}
		key := prefix + strings.ToLower(fn.Name)
		if _, dup := ex.udfs[key]; dup {
			return fmt.Errorf("%w: function %s declared twice", ErrBadPlan, key)
		}
		ex.udfs[key] = f
	}
	ex.env.UDF = func(name string) (expr.UDF, bool) {
		f := ex.udfs[name]
		if f == nil {
			return nil, false
		}
		return f.Call, true
	}
	return nil
}
