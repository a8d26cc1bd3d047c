package querytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// ErrNoQuery means the folder has no query.sql.
var ErrNoQuery = errors.New("querytest: no query.sql")

// Case is one loaded test folder.
type Case struct {
	Dir        string
	Name       string
	Query      string
	Inputs     []Input
	Outputs    map[string]string // output alias -> expected file (relative to Dir)
	Options    Options
	Compare    CompareOptions
	Tags       []string
	Status     string
	Confidence string
	// Functions are the JavaScript functions of udf-<name>.js (scalar)
	// and uda-<name>.js (aggregate) files in the folder.
	Functions []*pb.Function
}

// Input is one input of a case.
type Input struct {
	Name         string
	File         string
	Kind         string // "stream" (default) or "reference"
	ArrivalField string // field holding each event's arrival time, if any
	// MetadataField is a field holding each event's metadata (MetaJSON),
	// taken out of the event; IoTHubProperties adds the IoT Hub
	// properties to each event, as a job input's iothub_properties.
	MetadataField    string
	IoTHubProperties bool
}

// MetaJSON is the metadata of one event of a case's input (its
// metadata_field): what the gateway takes from the MQTT topic, the MQTT 5
// user properties and the arrival time.
type MetaJSON struct {
	Device        string            `json:"device"`
	MessageID     string            `json:"messageId"`
	CorrelationID string            `json:"correlationId"`
	Enqueued      string            `json:"enqueued"`
	User          map[string]string `json:"user"`
}

// Options are the job's event-ordering options.
type Options struct {
	CompatibilityLevel     string  `json:"compatibility_level"`
	LateArrivalToleranceS  float64 `json:"late_arrival_tolerance_s"`
	OutOfOrderToleranceS   float64 `json:"out_of_order_tolerance_s"`
	OutOfOrderPolicy       string  `json:"out_of_order_policy"`
	EarlyArrivalToleranceS float64 `json:"early_arrival_tolerance_s"`
}

// CompareOptions say how rows are compared.
type CompareOptions struct {
	Ordered           bool     `json:"ordered"`
	FloatRelTol       float64  `json:"float_rel_tol"`
	DatetimeSemantic  bool     `json:"datetime_semantic"`
	NullEqualsMissing bool     `json:"null_equals_missing"`
	UnorderedArrays   []string `json:"unordered_arrays"`
	// CaseInsensitiveNames compares field names ignoring case (compat 1.0).
	CaseInsensitiveNames bool `json:"case_insensitive_names"`
}

type caseJSON struct {
	ID         string               `json:"id"`
	Status     string               `json:"status"`
	Confidence string               `json:"confidence"`
	Inputs     map[string]inputJSON `json:"inputs"`
	Outputs    map[string]string    `json:"outputs"`
	Options    *Options             `json:"options"`
	Compare    *CompareOptions      `json:"compare"`
	Tags       []string             `json:"tags"`
}

type inputJSON struct {
	File             string `json:"file"`
	Kind             string `json:"kind"`
	Timestamp        string `json:"timestamp"`
	ArrivalField     string `json:"arrival_time_field"`
	MetadataField    string `json:"metadata_field"`
	IoTHubProperties bool   `json:"iothub_properties"`
}

// DefaultCompare is used when case.json gives no comparison rules.
var DefaultCompare = CompareOptions{FloatRelTol: 1e-9, DatetimeSemantic: true, NullEqualsMissing: true}

// Load reads a test folder.
func Load(dir string) (*Case, error) {
	q, err := os.ReadFile(filepath.Join(dir, "query.sql"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", ErrNoQuery, dir)
		}
		return nil, fmt.Errorf("querytest: %w", err)
	}
	c := &Case{Dir: dir, Name: filepath.Base(dir), Query: string(q), Outputs: map[string]string{}, Compare: DefaultCompare}
	raw, err := os.ReadFile(filepath.Join(dir, "case.json"))
	switch {
	case err == nil:
		var cj caseJSON
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&cj); err != nil {
			return nil, fmt.Errorf("querytest: %s/case.json: %w", dir, err)
		}
		names := make([]string, 0, len(cj.Inputs))
		for n := range cj.Inputs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			in := cj.Inputs[n]
			c.Inputs = append(c.Inputs, Input{Name: n, File: in.File, Kind: in.Kind, ArrivalField: in.ArrivalField,
				MetadataField: in.MetadataField, IoTHubProperties: in.IoTHubProperties})
		}
		for k, v := range cj.Outputs {
			c.Outputs[k] = v
		}
		if cj.Options != nil {
			c.Options = *cj.Options
		}
		if cj.Compare != nil {
			c.Compare = *cj.Compare
		}
		c.Tags, c.Status, c.Confidence = cj.Tags, cj.Status, cj.Confidence
	case errors.Is(err, os.ErrNotExist):
		if err := c.infer(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("querytest: %w", err)
	}
	if c.Options.CompatibilityLevel == "1.0" {
		c.Compare.CaseInsensitiveNames = true
	}
	if err := c.loadFunctions(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadFunctions reads the folder's udf-<name>.js and uda-<name>.js files.
func (c *Case) loadFunctions() error {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return fmt.Errorf("querytest: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		kind := pb.Function_SCALAR
		switch {
		case strings.HasPrefix(n, "uda-"):
			kind = pb.Function_AGGREGATE
		case !strings.HasPrefix(n, "udf-"):
			continue
		}
		if !strings.HasSuffix(n, ".js") {
			continue
		}
		code, err := os.ReadFile(filepath.Join(c.Dir, n))
		if err != nil {
			return fmt.Errorf("querytest: %w", err)
		}
		c.Functions = append(c.Functions, &pb.Function{Name: strings.TrimSuffix(n[len("udf-"):], ".js"), Kind: kind, Code: string(code)})
	}
	return nil
}

// infer finds inputs and expected outputs by file name.
func (c *Case) infer() error {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return fmt.Errorf("querytest: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "input.jsonl":
			c.Inputs = append(c.Inputs, Input{File: n})
		case strings.HasPrefix(n, "input-") && strings.HasSuffix(n, ".jsonl"):
			c.Inputs = append(c.Inputs, Input{Name: strings.TrimSuffix(strings.TrimPrefix(n, "input-"), ".jsonl"), File: n})
		case n == "expected.jsonl":
			c.Outputs[""] = n
		case strings.HasPrefix(n, "expected-") && strings.HasSuffix(n, ".jsonl"):
			c.Outputs[strings.TrimSuffix(strings.TrimPrefix(n, "expected-"), ".jsonl")] = n
		}
	}
	if len(c.Inputs) == 0 {
		return fmt.Errorf("querytest: %s has no input.jsonl or input-<Alias>.jsonl", c.Dir)
	}
	return nil
}

// ExecOptions converts the case options.
func (o Options) ExecOptions() (exec.Options, error) {
	pol, err := exec.ParsePolicy(o.OutOfOrderPolicy)
	if err != nil {
		return exec.Options{}, err
	}
	late := time.Duration(o.LateArrivalToleranceS * float64(time.Second))
	if late == 0 {
		late = -1 // an explicit 0 in a case file means no tolerance
	}
	return exec.Options{
		CompatLevel:           o.CompatibilityLevel,
		LateArrivalTolerance:  late,
		OutOfOrderTolerance:   time.Duration(o.OutOfOrderToleranceS * float64(time.Second)),
		OutOfOrderPolicy:      pol,
		EarlyArrivalTolerance: time.Duration(o.EarlyArrivalToleranceS * float64(time.Second)),
	}, nil
}

// Result is what a run produced.
type Result struct {
	Outputs     map[string][]*value.Record // by lower-case output name
	DeadLetters []exec.DeadLetter
	Counters    exec.Counters
}

// Event is one input event to feed.
type Event struct {
	Input   string
	Payload []byte
	Arrival int64
	Meta    *exec.Meta // nil: none
	sortKey int64
	order   int
}

// Prepare plans the case's query and reads its inputs.
func (c *Case) Prepare() (*pb.Plan, []InputFile, exec.Options, error) {
	opts, err := c.Options.ExecOptions()
	if err != nil {
		return nil, nil, opts, err
	}
	p, err := plan.FromSQL(c.Query)
	if err != nil {
		return nil, nil, opts, err
	}
	c.Configure(p)
	var files []InputFile
	for _, in := range c.Inputs {
		b, err := os.ReadFile(filepath.Join(c.Dir, in.File))
		if err != nil {
			return nil, nil, opts, fmt.Errorf("querytest: %w", err)
		}
		files = append(files, InputFile{Name: in.Name, Data: b, ArrivalField: in.ArrivalField, MetadataField: in.MetadataField, Reference: in.Kind == "reference"})
	}
	return p, files, opts, nil
}

// Configure adds to a plan of the case's query what a job file adds:
// the functions and the inputs' iothub_properties.
func (c *Case) Configure(p *pb.Plan) {
	p.Functions = c.Functions
	for _, in := range c.Inputs {
		if !in.IoTHubProperties {
			continue
		}
		for _, pi := range p.Inputs {
			if strings.EqualFold(pi.Name, in.Name) {
				pi.IothubProperties = true
			}
		}
	}
}

// Run executes the case's query over its inputs.
func (c *Case) Run() (*Result, error) {
	p, files, opts, err := c.Prepare()
	if err != nil {
		return nil, err
	}
	return RunFiles(p, files, opts)
}

// InputFile is the content of one JSON-lines input.
type InputFile struct {
	Name         string // empty: the query's only input
	Data         []byte
	ArrivalField string
	// MetadataField holds each event's metadata (MetaJSON), if any.
	MetadataField string
	// Reference data: a static table (JSON lines or one JSON array).
	Reference bool
}

// LoadReferences loads the reference files among files into ex.
func LoadReferences(ex *exec.Executor, files []InputFile) error {
	for _, f := range files {
		if !f.Reference {
			continue
		}
		rows, err := value.ReadTable(f.Data)
		if err != nil {
			return fmt.Errorf("querytest: reference %s: %w", f.Name, err)
		}
		if err := ex.SetReference(f.Name, rows); err != nil {
			return err
		}
	}
	return nil
}

// RunFiles runs a query over JSON-lines inputs like a local run of Stream
// Analytics: events with TIMESTAMP BY are fed in event-time order (stable),
// events with an arrival field in file order at that arrival time, and
// events of arrival-time inputs all at one instant. End of input flushes
// every window.
func RunFiles(p *pb.Plan, files []InputFile, opts exec.Options) (*Result, error) {
	res := &Result{Outputs: map[string][]*value.Record{}}
	for _, o := range p.Outputs {
		res.Outputs[strings.ToLower(o.Name)] = nil
	}
	opts.Emit = func(output string, ts int64, rec *value.Record) {
		k := strings.ToLower(output)
		res.Outputs[k] = append(res.Outputs[k], rec.Clone())
	}
	opts.DeadLetter = func(dl exec.DeadLetter) { res.DeadLetters = append(res.DeadLetters, dl) }
	ex, err := exec.New(p, opts)
	if err != nil {
		return nil, err
	}
	if err := LoadReferences(ex, files); err != nil {
		return nil, err
	}
	events, err := Events(ex, files, value.FromTime(time.Now()))
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		if err := ex.IngestMeta(e.Input, -1, e.Payload, e.Arrival, e.Meta); err != nil {
			return nil, err
		}
	}
	ex.Flush()
	res.Counters = ex.Counters()
	return res, nil
}

// Events orders the events of input files for a local run (see RunFiles).
func Events(ex *exec.Executor, files []InputFile, runStart int64) ([]Event, error) {
	var events []Event
	for _, f := range files {
		if f.Reference {
			continue
		}
		name := f.Name
		if name == "" {
			if ins := ex.Inputs(); len(ins) == 1 {
				name = ins[0]
			} else {
				return nil, fmt.Errorf("querytest: the query reads %d inputs (%s): name each input file", len(ins), strings.Join(ins, ", "))
			}
		}
		err := eachLine(f.Data, func(line int, b []byte) error {
			payload := append([]byte(nil), b...)
			e := Event{Input: name, Payload: payload, order: len(events)}
			if f.MetadataField != "" {
				var err error
				if e.Payload, e.Meta, err = takeMeta(payload, f.MetadataField); err != nil {
					return fmt.Errorf("querytest: input %s line %d: %w", name, line, err)
				}
				payload = e.Payload
			}
			switch {
			case f.ArrivalField != "":
				var d value.Decoder
				rec, err := d.Decode(payload)
				if err != nil {
					return fmt.Errorf("querytest: input %s line %d: %w", name, line, err)
				}
				v, _ := rec.Get(f.ArrivalField)
				t, err := value.ParseTime(v.Str())
				if err != nil {
					return fmt.Errorf("querytest: input %s line %d: arrival field %q: %w", name, line, f.ArrivalField, err)
				}
				e.Arrival, e.sortKey = t, t
			default:
				if t, ok := ex.EventTime(name, payload); ok {
					e.Arrival, e.sortKey = exec.ArrivalIsEventTime, t
				} else {
					if ex.HasEventTime(name) {
						// A bad timestamp: dead-lettered when ingested.
						e.Arrival, e.sortKey = exec.ArrivalIsEventTime, math.MinInt64
					} else {
						// Arrival-time input: every event arrives at run start.
						e.Arrival, e.sortKey = runStart, runStart
					}
				}
			}
			events = append(events, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].sortKey < events[j].sortKey })
	return events, nil
}

// takeMeta takes an event's metadata out of its field: the payload
// without the field, and the metadata.
func takeMeta(payload []byte, field string) ([]byte, *exec.Meta, error) {
	var d value.Decoder
	rec, err := d.Decode(payload)
	if err != nil {
		return nil, nil, err
	}
	i := rec.Index(field)
	if i < 0 {
		return payload, nil, nil
	}
	var mj MetaJSON
	if err := json.Unmarshal(value.AppendJSON(nil, rec.Vals[i]), &mj); err != nil {
		return nil, nil, fmt.Errorf("metadata field %q: %w", field, err)
	}
	m := &exec.Meta{Device: mj.Device, MessageID: mj.MessageID, CorrelationID: mj.CorrelationID}
	if mj.Enqueued != "" {
		if m.Enqueued, err = value.ParseTime(mj.Enqueued); err != nil {
			return nil, nil, fmt.Errorf("metadata field %q: enqueued: %w", field, err)
		}
	}
	keys := make([]string, 0, len(mj.User))
	for k := range mj.User {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.User = append(m.User, exec.UserProperty{Key: k, Value: mj.User[k]})
	}
	out := &value.Record{Names: append(append([]string(nil), rec.Names[:i]...), rec.Names[i+1:]...),
		Vals: append(append([]value.Value(nil), rec.Vals[:i]...), rec.Vals[i+1:]...)}
	return value.AppendRecordJSON(nil, out), m, nil
}
