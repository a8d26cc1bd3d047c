package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const importLong = `Turns a Stream Analytics job, as Azure exports it (an ARM template with a
Microsoft.StreamAnalytics/streamingjobs resource, or the job resource's JSON
from "az stream-analytics job show"), into a Millstream job file.

The query is kept as it is. Inputs and outputs are mapped onto the gateway:
  - a stream input (Edge hub, IoT Hub, Event Hub) reads MQTT topic
    devices/+/messages/events/# (device id from the topic), or the topic
    given with --topic NAME=FILTER;
  - a reference input reads data/reference/NAME.json (copy the data there);
  - an Edge hub, IoT Hub, Event Hub or Service Bus output publishes to MQTT
    topic millstream/{job}/{output} (set the gateway's upstream: to bridge
    it to the cloud);
  - any other output (Blob, SQL, Cosmos DB, ...) writes data/JOB/OUTPUT.jsonl.
The event ordering policy (late arrival, out of order, adjust or drop) and
the compatibility level are kept. Every choice that needs a look is printed
on standard error; the job is checked as the gateway would check it, and a
query that does not compile here is reported with its line and column
(exit code 1, the file is still written so that it can be edited).`

func newImportCmd() *cobra.Command {
	var o importOptions
	c := &cobra.Command{
		Use:   "import TEMPLATE.json",
		Short: "Turn a Stream Analytics job (ARM template or job JSON) into a job file",
		Long:  importLong,
		Args:  nArgs(1, "import takes one template file"),
		RunE: func(c *cobra.Command, args []string) error {
			o.template = args[0]
			return runImport(c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.parameters, "parameters", "", "ARM parameters file for [parameters('...')] values")
	f.StringVar(&o.name, "name", "", "the job's name (default: the Stream Analytics job's)")
	f.StringArrayVar(&o.topics, "topic", nil, "INPUT=FILTER: the MQTT topic filter a stream input reads (repeatable)")
	f.StringVar(&o.out, "out", "", "write the job file here instead of standard output")
	return c
}

type importOptions struct {
	template, parameters, name, out string
	topics                          []string
}

// maxTemplateBytes bounds what import reads: exported templates are a few
// KiB to a few hundred.
const maxTemplateBytes = 16 << 20

func runImport(stdout, stderr io.Writer, o importOptions) error {
	topics := map[string]string{}
	for _, t := range o.topics {
		name, filter, ok := strings.Cut(t, "=")
		if !ok || name == "" || filter == "" {
			return fmt.Errorf("%w: --topic %q: want INPUT=FILTER", errUsage, t)
		}
		topics[strings.ToLower(name)] = filter
	}
	data, err := readBounded(o.template)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	var params map[string]any
	if o.parameters != "" {
		pdata, err := readBounded(o.parameters)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if params, err = armParameters(pdata); err != nil {
			return fmt.Errorf("import: %s: %w", o.parameters, err)
		}
	}
	asa, err := parseASAJob(data, params)
	if err != nil {
		return fmt.Errorf("import: %s: %w", o.template, err)
	}
	if o.name != "" {
		asa.name = o.name
	}
	job, notes := asa.toJob(topics)
	for name := range topics {
		if !asa.hasInput(name) {
			return fmt.Errorf("%w: --topic: the job has no input %q", errUsage, name)
		}
	}
	for _, n := range notes {
		fmt.Fprintln(stderr, "millstream import:", n)
	}
	out, err := jobYAML(job, o.template)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, out, 0o644); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	} else if _, err := stdout.Write(out); err != nil {
		return err
	}
	// Checked as the gateway will check it, from the bytes written.
	if _, err := config.ParseJob(o.template+" (imported)", out); err != nil {
		return fmt.Errorf("import: the imported job does not pass the gateway's checks (edit it, then try `millstream query check`): %w", err)
	}
	return nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTemplateBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTemplateBytes {
		return nil, fmt.Errorf("%s: over %d MiB", path, maxTemplateBytes>>20)
	}
	return data, nil
}

// asaJob is what import takes from a Stream Analytics job.
type asaJob struct {
	name                 string
	query                string
	inputs, outputs      []asaEndpoint
	functions            []asaFunction
	lateArrival          *int64 // seconds
	outOfOrder           *int64
	outOfOrderPolicy     string
	compatibility        string
	unresolvedExpression []string
}

type asaEndpoint struct {
	name, kind, source, serialization string // kind: Stream or Reference (inputs)
}

type asaFunction struct{ name, binding string }

// The JSON shapes of the ARM resource, only the fields import reads.
type (
	armTemplate struct {
		Parameters map[string]struct {
			DefaultValue any `json:"defaultValue"`
		} `json:"parameters"`
		Resources []armResource `json:"resources"`
	}
	armResource struct {
		Type       string          `json:"type"`
		Name       any             `json:"name"`
		Properties json.RawMessage `json:"properties"`
		Resources  []armResource   `json:"resources"`
	}
	armJobProperties struct {
		EventsOutOfOrderPolicy             string     `json:"eventsOutOfOrderPolicy"`
		EventsOutOfOrderMaxDelayInSeconds  *int64     `json:"eventsOutOfOrderMaxDelayInSeconds"`
		EventsLateArrivalMaxDelayInSeconds *int64     `json:"eventsLateArrivalMaxDelayInSeconds"`
		CompatibilityLevel                 string     `json:"compatibilityLevel"`
		Inputs                             []armNamed `json:"inputs"`
		Outputs                            []armNamed `json:"outputs"`
		Functions                          []armNamed `json:"functions"`
		Transformation                     *armNamed  `json:"transformation"`
	}
	armNamed struct {
		Name       any             `json:"name"`
		Properties json.RawMessage `json:"properties"`
	}
	armEndpointProperties struct {
		Type       string `json:"type"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Serialization struct {
			Type string `json:"type"`
		} `json:"serialization"`
		Query      string `json:"query"` // transformations
		Properties struct {
			Binding struct {
				Type string `json:"type"`
			} `json:"binding"`
		} `json:"properties"` // functions
	}
)

const streamingJobType = "microsoft.streamanalytics/streamingjobs"

// parseASAJob reads an ARM template or a bare job resource.
func parseASAJob(data []byte, params map[string]any) (*asaJob, error) {
	var t armTemplate
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	r := armParams{given: params, defaults: map[string]any{}}
	for k, p := range t.Parameters {
		r.defaults[k] = p.DefaultValue
	}
	var job *armResource
	var children []armResource
	var walk func(rs []armResource)
	walk = func(rs []armResource) {
		for i := range rs {
			typ := strings.ToLower(rs[i].Type)
			switch {
			case typ == streamingJobType && job == nil:
				job = &rs[i]
			case strings.HasPrefix(typ, streamingJobType+"/"):
				children = append(children, rs[i])
			}
			walk(rs[i].Resources)
		}
	}
	walk(t.Resources)
	if job == nil {
		// A bare resource: {"name": ..., "properties": {...}}.
		var bare armResource
		if err := json.Unmarshal(data, &bare); err != nil || len(bare.Properties) == 0 {
			return nil, errors.New("no Microsoft.StreamAnalytics/streamingjobs resource, and not a job resource either")
		}
		job = &bare
	}
	var props armJobProperties
	if err := json.Unmarshal(job.Properties, &props); err != nil {
		return nil, fmt.Errorf("job properties: %w", err)
	}
	var res armResolved
	a := &asaJob{name: r.resolve(job.Name, &res), outOfOrderPolicy: strings.ToLower(props.EventsOutOfOrderPolicy),
		compatibility: props.CompatibilityLevel, lateArrival: props.EventsLateArrivalMaxDelayInSeconds, outOfOrder: props.EventsOutOfOrderMaxDelayInSeconds}
	add := func(kind string, n armNamed) error {
		var p armEndpointProperties
		if len(n.Properties) > 0 {
			if err := json.Unmarshal(n.Properties, &p); err != nil {
				return fmt.Errorf("%s %v: %w", kind, n.Name, err)
			}
		}
		name := lastSegment(r.resolve(n.Name, &res))
		switch kind {
		case "inputs":
			a.inputs = append(a.inputs, asaEndpoint{name: name, kind: p.Type, source: p.Datasource.Type, serialization: p.Serialization.Type})
		case "outputs":
			a.outputs = append(a.outputs, asaEndpoint{name: name, source: p.Datasource.Type, serialization: p.Serialization.Type})
		case "functions":
			a.functions = append(a.functions, asaFunction{name: name, binding: p.Properties.Binding.Type})
		case "transformations":
			a.query = p.Query
		}
		return nil
	}
	for kind, list := range map[string][]armNamed{"inputs": props.Inputs, "outputs": props.Outputs, "functions": props.Functions} {
		for _, n := range list {
			if err := add(kind, n); err != nil {
				return nil, err
			}
		}
	}
	if props.Transformation != nil {
		if err := add("transformations", *props.Transformation); err != nil {
			return nil, err
		}
	}
	for _, c := range children {
		kind := strings.TrimPrefix(strings.ToLower(c.Type), streamingJobType+"/")
		if err := add(kind, armNamed{Name: c.Name, Properties: c.Properties}); err != nil {
			return nil, err
		}
	}
	a.unresolvedExpression = res.unresolved
	if strings.TrimSpace(a.query) == "" {
		return nil, errors.New("the job has no transformation query")
	}
	for _, l := range [][]asaEndpoint{a.inputs, a.outputs} {
		sort.Slice(l, func(i, j int) bool { return strings.ToLower(l[i].name) < strings.ToLower(l[j].name) })
	}
	return a, nil
}

// armResolved collects the expressions a parse could not resolve.
type armResolved struct{ unresolved []string }

type armParams struct{ given, defaults map[string]any }

var paramExpr = regexp.MustCompile(`^\[parameters\('([^']+)'\)\]$`)

// resolve turns a name into a string: "[parameters('x')]" takes x from the
// parameters file, else the template's default; other expressions are
// kept as they are, and noted.
func (r armParams) resolve(v any, res *armResolved) string {
	s, _ := v.(string)
	if m := paramExpr.FindStringSubmatch(s); m != nil {
		for _, src := range []map[string]any{r.given, r.defaults} {
			if pv, ok := src[m[1]]; ok && pv != nil {
				return fmt.Sprint(pv)
			}
		}
		res.unresolved = append(res.unresolved, s)
		return m[1]
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		// Child resources are often named [concat(parameters('job'), '/Input')]:
		// their own name is the literal after the last slash.
		if m := childNameExpr.FindStringSubmatch(s); m != nil {
			return m[1]
		}
		res.unresolved = append(res.unresolved, s)
	}
	return s
}

var childNameExpr = regexp.MustCompile(`'/([^'/]+)'\)\]$`)

// armParameters reads an ARM parameters file: {"parameters": {"x": {"value": v}}}.
func armParameters(data []byte) (map[string]any, error) {
	var f struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a parameters file: %w", err)
	}
	out := map[string]any{}
	for k, p := range f.Parameters {
		out[k] = p.Value
	}
	return out, nil
}

// lastSegment is a child resource's own name ("job/input" in templates
// that declare inputs as separate resources).
func lastSegment(name string) string {
	if i := strings.LastIndex(name, "/"); i >= 0 && !strings.HasPrefix(name, "[") {
		return name[i+1:]
	}
	return name
}

func (a *asaJob) hasInput(lowerName string) bool {
	for _, in := range a.inputs {
		if strings.ToLower(in.name) == lowerName {
			return true
		}
	}
	return false
}

// Data source types, lower-cased, that are a message bus at the edge.
var messageBusSources = map[string]bool{
	"gatewaymessagebus": true, "microsoft.devices/iothubs": true, "microsoft.servicebus/eventhub": true,
	"microsoft.eventhub/eventhub": true, "microsoft.servicebus/queue": true, "microsoft.servicebus/topic": true,
}

// toJob maps the job onto a gateway, with a note for each choice to check.
func (a *asaJob) toJob(topics map[string]string) (*pb.Job, []string) {
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	name := jobName(a.name)
	if name == "" {
		name = "imported"
		note("the job's name could not be read; it is %q (set --name)", name)
	}
	job := &pb.Job{Name: name, Query: cleanQuery(a.query)}
	for _, e := range a.unresolvedExpression {
		note("template expression %s is not evaluated: give --parameters, or check the name it left", e)
	}
	for _, in := range a.inputs {
		if in.serialization != "" && !strings.EqualFold(in.serialization, "json") {
			note("input %s: %s serialization is not read by Millstream (JSON only); its devices must publish JSON", in.name, in.serialization)
		}
		if strings.EqualFold(in.kind, "reference") {
			file := "data/reference/" + in.name + ".json"
			job.Inputs = append(job.Inputs, &pb.JobInput{Name: in.name, ReferenceFile: file})
			note("input %s: reference data (%s) is read from %s (under the default data_dir, a data root): copy it there, as a JSON array or JSON lines", in.name, in.source, file)
			continue
		}
		ji := &pb.JobInput{Name: in.name, Topic: actors.DefaultTopic}
		if t, ok := topics[strings.ToLower(in.name)]; ok {
			ji.Topic = t
		} else if !messageBusSources[strings.ToLower(in.source)] {
			note("input %s: %s has no edge equivalent; it reads MQTT topic %s (set --topic %s=FILTER)", in.name, in.source, ji.Topic, in.name)
		}
		job.Inputs = append(job.Inputs, ji)
	}
	for _, out := range a.outputs {
		src := strings.ToLower(out.source)
		if messageBusSources[src] {
			job.Outputs = append(job.Outputs, &pb.JobOutput{Name: out.name, Sink: &pb.JobOutput_Mqtt{Mqtt: &pb.MqttSink{Topic: "millstream/{job}/{output}", Qos: 1}}})
			if src != "gatewaymessagebus" {
				note("output %s: %s becomes MQTT topic millstream/%s/%s; set the gateway's upstream: broker to bridge it to the cloud", out.name, out.source, name, out.name)
			}
			continue
		}
		path := "data/" + name + "/" + out.name + ".jsonl"
		job.Outputs = append(job.Outputs, &pb.JobOutput{Name: out.name, Sink: &pb.JobOutput_File{File: &pb.FileSink{Path: path}}})
		note("output %s: %s has no edge equivalent; it writes JSON lines to %s (or change it to an http: output)", out.name, out.source, path)
	}
	for _, f := range a.functions {
		note("function udf.%s (%s) is not imported: define it in the job file by hand, or rewrite the call in SQL", f.name, f.binding)
	}
	pol := &pb.EventPolicy{CompatibilityLevel: a.compatibility}
	if a.lateArrival != nil {
		pol.LateArrivalTolerance = durationpb.New(time.Duration(*a.lateArrival) * time.Second)
	}
	if a.outOfOrder != nil {
		pol.OutOfOrderTolerance = durationpb.New(time.Duration(*a.outOfOrder) * time.Second)
	}
	switch a.outOfOrderPolicy {
	case "", "adjust", "drop":
		pol.OutOfOrderPolicy = a.outOfOrderPolicy
	default:
		note("eventsOutOfOrderPolicy %q is not known; the gateway's default (adjust) applies", a.outOfOrderPolicy)
	}
	job.Policy = pol
	return job, notes
}

// jobName makes a Stream Analytics job name a file-friendly one:
// TemperatureMonitoringEdge -> temperature-monitoring-edge.
func jobName(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if prevLower {
				b.WriteByte('-')
			}
			b.WriteRune(r + 'a' - 'A')
			prevLower = false
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			prevLower = true
		default:
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
			prevLower = false
		}
	}
	return strings.Trim(b.String(), "-")
}

// cleanQuery is the query with Unix line ends and no trailing blanks, so
// that the job file shows it as a block.
func cleanQuery(q string) string {
	lines := strings.Split(strings.ReplaceAll(q, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimSpace(strings.Join(lines, "\n")) + "\n"
}

// jobYAML writes the job as a job file: the query as a block, the rest
// in flow style, as the shipped job files are.
func jobYAML(job *pb.Job, from string) ([]byte, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) { m.Content = append(m.Content, scalar(key), v) }
	add("name", scalar(job.Name))
	q := scalar(job.Query)
	q.Style = yaml.LiteralStyle
	add("query", q)
	ins := &yaml.Node{Kind: yaml.SequenceNode}
	for _, in := range job.Inputs {
		n := flowMap("name", in.Name)
		if in.ReferenceFile != "" {
			n.Content = append(n.Content, scalar("reference_file"), scalar(in.ReferenceFile))
		} else {
			n.Content = append(n.Content, scalar("topic"), scalar(in.Topic))
		}
		ins.Content = append(ins.Content, n)
	}
	add("inputs", ins)
	outs := &yaml.Node{Kind: yaml.SequenceNode}
	for _, o := range job.Outputs {
		n := flowMap("name", o.Name)
		switch s := o.Sink.(type) {
		case *pb.JobOutput_Mqtt:
			n.Content = append(n.Content, scalar("mqtt"), flowMap("topic", s.Mqtt.Topic, "qos", fmt.Sprint(s.Mqtt.Qos)))
		case *pb.JobOutput_File:
			n.Content = append(n.Content, scalar("file"), flowMap("path", s.File.Path))
		}
		outs.Content = append(outs.Content, n)
	}
	add("outputs", outs)
	if p := job.Policy; p != nil {
		pm := &yaml.Node{Kind: yaml.MappingNode}
		if p.LateArrivalTolerance != nil {
			pm.Content = append(pm.Content, scalar("late_arrival_tolerance"), scalar(p.LateArrivalTolerance.AsDuration().String()))
		}
		if p.OutOfOrderTolerance != nil {
			pm.Content = append(pm.Content, scalar("out_of_order_tolerance"), scalar(p.OutOfOrderTolerance.AsDuration().String()))
		}
		if p.OutOfOrderPolicy != "" {
			pm.Content = append(pm.Content, scalar("out_of_order_policy"), scalar(p.OutOfOrderPolicy))
		}
		if p.CompatibilityLevel != "" {
			pm.Content = append(pm.Content, scalar("compatibility_level"), scalar(p.CompatibilityLevel))
		}
		if len(pm.Content) > 0 {
			add("policy", pm)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Imported by millstream import from %s.\n", filepath.Base(from))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{m}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func scalar(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: "!!str"}
	if s == "" || strings.ContainsAny(s, "{}[]#&*!|>'\"%@`:,+") {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// flowMap is {k1: v1, k2: v2} on one line.
func flowMap(kv ...string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for i := 0; i+1 < len(kv); i += 2 {
		v := scalar(kv[i+1])
		if kv[i] == "qos" {
			v.Tag, v.Style = "!!int", 0
		}
		n.Content = append(n.Content, scalar(kv[i]), v)
	}
	return n
}
