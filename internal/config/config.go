package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	"github.com/millstream/millstream/operators/exec"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid")

// LoadJob reads a job file (.yaml, .yml, .json, .textproto, .txtpb, .pbtxt).
func LoadJob(path string) (*pb.Job, error) {
	j := &pb.Job{}
	if err := load(path, j); err != nil {
		return nil, err
	}
	if j.QueryFile != "" {
		q, err := os.ReadFile(filepath.Join(filepath.Dir(path), j.QueryFile))
		if err != nil {
			return nil, fmt.Errorf("%s: query_file: %w", path, err)
		}
		j.Query, j.QueryFile = string(q), ""
	}
	if err := ValidateJob(j); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return j, nil
}

// LoadGateway reads a gateway configuration file.
func LoadGateway(path string) (*pb.GatewayConfig, error) {
	return LoadGatewayWith(path, nil)
}

// LoadGatewayWith reads a gateway configuration file and lets override
// change it (command-line flags) before it is validated.
func LoadGatewayWith(path string, override func(*pb.GatewayConfig)) (*pb.GatewayConfig, error) {
	g := &pb.GatewayConfig{}
	if err := load(path, g); err != nil {
		return nil, err
	}
	if override != nil {
		override(g)
	}
	EnsureGatewayDefaults(g)
	if err := ValidateGateway(g); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// ParseJob parses a job from bytes in the format its name implies.
func ParseJob(name string, data []byte) (*pb.Job, error) {
	j := &pb.Job{}
	if err := parse(name, data, j); err != nil {
		return nil, err
	}
	if err := ValidateJob(j); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return j, nil
}

func load(path string, m proto.Message) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return parse(path, data, m)
}

func parse(name string, data []byte, m proto.Message) error {
	if len(data) > MaxConfigBytes {
		return fmt.Errorf("%s: %w: %d bytes, at most %d", name, ErrInvalid, len(data), MaxConfigBytes)
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".textproto", ".txtpb", ".pbtxt":
		if err := prototext.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case ".json":
		if err := protojson.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return fmt.Errorf("%s: %w: the file is empty", name, ErrInvalid)
	}
	var js bytes.Buffer
	var lines []offsetLine
	if err := toJSON(&js, doc.Content[0], &lines, 0); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := protojson.Unmarshal(js.Bytes(), m); err != nil {
		return fmt.Errorf("%s:%d: %w", name, lineOf(err, lines), cleanProtoErr(err))
	}
	return nil
}

// offsetLine maps a byte offset of the generated JSON to a YAML line.
type offsetLine struct {
	off  int
	line int
}

var protoErrPos = regexp.MustCompile(`\(line \d+:(\d+)\):?`)

func lineOf(err error, lines []offsetLine) int {
	m := protoErrPos.FindStringSubmatch(err.Error())
	if m == nil || len(lines) == 0 {
		return 1
	}
	col, _ := strconv.Atoi(m[1])
	i := sort.Search(len(lines), func(i int) bool { return lines[i].off > col }) - 1
	if i < 0 {
		i = 0
	}
	return lines[i].line
}

func cleanProtoErr(err error) error {
	msg := protoErrPos.ReplaceAllString(err.Error(), "")
	msg = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(msg, "proto:"), "\u00a0"))
	return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimSpace(msg))
}

// MaxConfigBytes bounds a job or gateway configuration (file or admin API
// body); MaxConfigDepth bounds the nesting of its YAML.
const (
	MaxConfigBytes = 1 << 20
	MaxConfigDepth = 64
)

// toJSON writes a YAML node as JSON, remembering where each key starts.
// Anchors and aliases are refused: a job or gateway needs none, and an
// alias can refer to itself (a: &x [*x]) or expand a few hundred bytes
// into gigabytes ("billion laughs").
func toJSON(b *bytes.Buffer, n *yaml.Node, lines *[]offsetLine, depth int) error {
	if depth > MaxConfigDepth {
		return fmt.Errorf("line %d column %d: %w: nested more than %d levels", n.Line, n.Column, ErrInvalid, MaxConfigDepth)
	}
	if n.Anchor != "" {
		return fmt.Errorf("line %d column %d: %w: YAML anchors (&%s) are not supported in configurations", n.Line, n.Column, ErrInvalid, n.Anchor)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		return toJSON(b, n.Content[0], lines, depth+1)
	case yaml.AliasNode:
		return fmt.Errorf("line %d column %d: %w: YAML aliases (*%s) are not supported in configurations", n.Line, n.Column, ErrInvalid, n.Value)
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			*lines = append(*lines, offsetLine{off: b.Len() + 1, line: n.Content[i].Line})
			writeString(b, n.Content[i].Value)
			b.WriteByte(':')
			if err := toJSON(b, n.Content[i+1], lines, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			*lines = append(*lines, offsetLine{off: b.Len() + 1, line: c.Line})
			if err := toJSON(b, c, lines, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			b.WriteString("null")
		case "!!bool", "!!int", "!!float":
			b.WriteString(n.Value)
		default:
			writeString(b, n.Value)
		}
	default:
		return fmt.Errorf("line %d: %w: unsupported YAML node", n.Line, ErrInvalid)
	}
	return nil
}

func writeString(b *bytes.Buffer, s string) {
	b.WriteString(strconv.Quote(s))
}

// ValidateJob checks a job and reports every problem it finds.
func ValidateJob(j *pb.Job) error {
	_, err := CompileJob(j)
	return err
}

// CompileJob checks a job like ValidateJob and returns its plan: the
// query parsed and planned once (or the job's plan, when it gives one).
func CompileJob(j *pb.Job) (*pb.Plan, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if j.Name == "" {
		bad("job: name is required")
	}
	if j.MaxStateBytes > 1<<40 {
		bad("job %q: max_state_bytes must be at most 1 TiB", j.Name)
	}
	var p *pb.Plan
	switch {
	case j.QueryFile != "":
		bad("job %q: query_file must be read by LoadJob (it is relative to the job file)", j.Name)
	case j.Query != "" && j.Plan != nil:
		bad("job %q: give query or plan, not both", j.Name)
	case j.Query != "" || j.Plan != nil:
		var err error
		if p, err = JobPlan(j); err != nil {
			errs = append(errs, fmt.Errorf("job %q: %w", j.Name, err))
		}
	default:
		bad("job %q: a query is required", j.Name)
	}
	if _, err := ExecOptions(j); err != nil {
		errs = append(errs, fmt.Errorf("job %q: %w", j.Name, err))
	}
	seen := map[string]bool{}
	for _, in := range j.Inputs {
		if in.Name == "" {
			bad("job %q: an input has no name", j.Name)
		}
		if seen[strings.ToLower(in.Name)] {
			bad("job %q: input %q is declared twice", j.Name, in.Name)
		}
		seen[strings.ToLower(in.Name)] = true
		if in.DeviceId != "" && !strings.HasPrefix(in.DeviceId, "topic:") && !strings.HasPrefix(in.DeviceId, "field:") {
			bad("job %q: input %q: device_id must be topic:N or field:NAME, not %q", j.Name, in.Name, in.DeviceId)
		}
	}
	outs := map[string]bool{}
	for _, o := range j.Outputs {
		if o.Name == "" {
			bad("job %q: an output has no name", j.Name)
		}
		outs[strings.ToLower(o.Name)] = true
		if o.Sink == nil {
			bad("job %q: output %q needs a sink (mqtt, file, http or log)", j.Name, o.Name)
		}
		if f := o.GetFile(); f != nil && f.Path == "" {
			bad("job %q: output %q: file sink needs a path", j.Name, o.Name)
		}
		if h := o.GetHttp(); h != nil && !strings.HasPrefix(h.Url, "http://") && !strings.HasPrefix(h.Url, "https://") {
			bad("job %q: output %q: http sink needs an http:// or https:// url", j.Name, o.Name)
		}
		if m := o.GetMqtt(); m != nil && m.Qos > 1 {
			bad("job %q: output %q: qos must be 0 or 1", j.Name, o.Name)
		}
		if d := o.Delivery; d != nil {
			if d.WhenFull != "" && d.WhenFull != "reject" && d.WhenFull != "drop_oldest" {
				bad("job %q: output %q: delivery.when_full must be reject or drop_oldest, not %q", j.Name, o.Name, d.WhenFull)
			}
			if d.QuotaBytes < 0 {
				bad("job %q: output %q: delivery.quota_bytes must not be negative", j.Name, o.Name)
			}
			for name, v := range map[string]*durationpb.Duration{"ttl": d.Ttl, "retry_min": d.RetryMin, "retry_max": d.RetryMax} {
				if v != nil && v.AsDuration() < 0 {
					bad("job %q: output %q: delivery.%s must not be negative", j.Name, o.Name, name)
				}
			}
			if d.RetryMin != nil && d.RetryMax != nil && d.RetryMax.AsDuration() < d.RetryMin.AsDuration() {
				bad("job %q: output %q: delivery.retry_max is below retry_min", j.Name, o.Name)
			}
		}
	}
	if p != nil {
		for _, o := range p.Outputs {
			if !outs[strings.ToLower(o.Name)] {
				bad("job %q: the query writes output %q, which the job does not declare", j.Name, o.Name)
			}
		}
		for _, in := range p.Inputs {
			if !seen[strings.ToLower(in.Name)] && !strings.EqualFold(in.Name, SystemDevicesInput) {
				bad("job %q: the query reads input %q, which the job does not declare", j.Name, in.Name)
			}
		}
		for _, r := range p.References {
			found := false
			for _, in := range j.Inputs {
				if strings.EqualFold(in.Name, r) {
					found = true
					if in.ReferenceFile == "" {
						bad("job %q: %q is joined as reference data: give it a reference_file", j.Name, r)
					}
				}
			}
			if !found {
				bad("job %q: the query joins reference input %q, which the job does not declare", j.Name, r)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// ExecOptions turns a job's event policy into executor options.
func ExecOptions(j *pb.Job) (exec.Options, error) {
	pol := j.GetPolicy()
	p, err := exec.ParsePolicy(pol.GetOutOfOrderPolicy())
	if err != nil {
		return exec.Options{}, err
	}
	o := exec.Options{OutOfOrderPolicy: p, CompatLevel: pol.GetCompatibilityLevel(), LowerCaseNames: pol.GetLowerCaseNames()}
	if d := pol.GetLateArrivalTolerance(); d != nil {
		o.LateArrivalTolerance = d.AsDuration()
		if o.LateArrivalTolerance == 0 {
			o.LateArrivalTolerance = -1
		}
	}
	if d := pol.GetOutOfOrderTolerance(); d != nil {
		o.OutOfOrderTolerance = d.AsDuration()
	}
	switch o.CompatLevel {
	case "", "1.0", "1.1", "1.2":
	default:
		return o, fmt.Errorf("%w: compatibility_level must be 1.0, 1.1 or 1.2", ErrInvalid)
	}
	if o.LateArrivalTolerance > 20*24*3600e9 || o.OutOfOrderTolerance < 0 {
		return o, fmt.Errorf("%w: tolerances must be between 0 and 20 days", ErrInvalid)
	}
	return o, nil
}

// SystemDevicesInput is the input the gateway fills with device online and
// offline events; jobs read it without declaring it.
const SystemDevicesInput = "Devices"

// EmbeddedBrokerOff is the mqtt_listen value that runs no embedded broker.
const EmbeddedBrokerOff = "none"

// ValidateGateway checks a gateway configuration, every problem at once.
func ValidateGateway(g *pb.GatewayConfig) error {
	var errs []error
	if g.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("%w: partitions must be at most 4096", ErrInvalid))
	}
	if g.MaxPayloadBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("%w: max_payload_bytes must be at most 64 MiB", ErrInvalid))
	}
	if d := g.Durability; d != nil {
		if d.SyncInterval != nil && d.SyncInterval.AsDuration() < 0 {
			errs = append(errs, fmt.Errorf("%w: durability.sync_interval must not be negative", ErrInvalid))
		}
		if d.CheckpointInterval != nil && d.CheckpointInterval.AsDuration() < 0 {
			errs = append(errs, fmt.Errorf("%w: durability.checkpoint_interval must not be negative", ErrInvalid))
		}
	}
	if c := g.Cluster; c != nil {
		errs = append(errs, validateCluster(g, c)...)
	}
	errs = append(errs, validateSecurity(g)...)
	if d := g.DeadLetters; d != nil {
		if d.MaxEntries > 1_000_000 {
			errs = append(errs, fmt.Errorf("%w: dead_letters.max_entries must be at most 1,000,000", ErrInvalid))
		}
		if d.MaxBytes > 1<<30 {
			errs = append(errs, fmt.Errorf("%w: dead_letters.max_bytes must be at most 1 GiB", ErrInvalid))
		}
		if strings.ContainsAny(d.Topic, "+#\x00") {
			errs = append(errs, fmt.Errorf("%w: dead_letters.topic %q: a topic to publish to has no wildcards", ErrInvalid, d.Topic))
		}
	}
	errs = append(errs, validateSecurityPaths(g)...)
	names := map[string]bool{}
	for _, j := range g.Jobs {
		if err := ValidateJob(j); err != nil {
			errs = append(errs, err)
		}
		if names[j.Name] {
			errs = append(errs, fmt.Errorf("%w: job %q is configured twice", ErrInvalid, j.Name))
		}
		names[j.Name] = true
	}
	return errors.Join(errs...)
}

// validateSecurityPaths checks the file settings of the admin API, the
// data roots and external brokers' passwords (their files are read when
// the gateway starts).
func validateSecurityPaths(g *pb.GatewayConfig) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	for i, r := range g.DataRoots {
		if strings.TrimSpace(r) == "" {
			bad("data_roots[%d] is empty", i)
		}
	}
	brokers := append([]*pb.ExternalBroker{g.Upstream}, g.Brokers...)
	for _, b := range brokers {
		if b == nil {
			continue
		}
		n := 0
		for _, v := range []string{b.Password, b.PasswordFile, b.PasswordEnv} {
			if v != "" {
				n++
			}
		}
		if n > 1 {
			bad("broker %s: give one of password, password_file and password_env", b.Url)
		}
	}
	return errs
}

func validateCluster(g *pb.GatewayConfig, c *pb.Cluster) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: cluster."+format, append([]any{ErrInvalid}, args...)...))
	}
	if g.Durability.GetDisabled() {
		bad("durability.disabled is set: a cluster member needs durable state (replication ships its log)")
	}
	if g.Name == "" || strings.Contains(g.Name, "#") {
		bad("a cluster member needs a name, unique in the cluster and without '#'")
	}
	if c.Replicas > 5 {
		bad("replicas must be at most 5")
	}
	switch c.Quorum {
	case "", "majority", "none":
	default:
		bad("quorum %q: majority or none", c.Quorum)
	}
	switch c.MinorityInput {
	case "", "log", "refuse":
	default:
		bad("minority_input %q: log or refuse", c.MinorityInput)
	}
	if c.GossipKey != "" {
		if err := checkGossipKey(c.GossipKey); err != nil {
			bad("gossip_key: %v", err)
		}
	}
	for name, d := range map[string]*durationpb.Duration{"probe_interval": c.ProbeInterval, "probe_timeout": c.ProbeTimeout,
		"gossip_interval": c.GossipInterval, "lease": c.Lease, "hand_off_wait": c.HandOffWait} {
		if d != nil && d.AsDuration() < 0 {
			bad("%s must not be negative", name)
		}
	}
	return errs
}
