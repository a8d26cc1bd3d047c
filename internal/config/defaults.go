package config

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Every default of a gateway's configuration is here, and
// EnsureGatewayDefaults writes them into the configuration: what a gateway
// runs with is the configuration it prints (`millstream gateway
// --print-config`), and testdata/defaults.* keep it from changing by
// accident (TestGatewayDefaults, -rewrite). The packages a gateway is made
// of (actors, state, cluster) fall back to the same values for zero fields
// when used as libraries.
const (
	DefaultName            = "gateway"
	DefaultDataDir         = "./data"
	DefaultMQTTListen      = "127.0.0.1:1883"
	DefaultHTTPListen      = "127.0.0.1:8080"
	DefaultPartitions      = 64
	DefaultMaxPayloadBytes = 256 * 1024

	DefaultSyncInterval       = 2 * time.Millisecond
	DefaultCheckpointInterval = time.Second
	DefaultMinFreeBytes       = 128 << 20

	DefaultMQTTMaxConnections   = 10_000
	DefaultMQTTMaxSessionExpiry = time.Hour
	DefaultMQTTMaxRetained      = 10_000
	DefaultMQTTMaxRetainedBytes = 64 << 20

	DefaultDeadLetterEntries = 10_000
	DefaultDeadLetterBytes   = 16 << 20

	DefaultGossipListen  = "127.0.0.1:7946"
	DefaultRemoteListen  = "127.0.0.1:7947"
	DefaultReplicas      = 2
	DefaultQuorum        = "majority"
	DefaultMinorityInput = "log"
	DefaultHandOffWait   = 10 * time.Second
	// Cluster-wide outputs: relayed rows waiting for one peer.
	DefaultRelayQueueBytes = 8 << 20
	// Failure detection: hashicorp/memberlist's LAN settings.
	DefaultProbeInterval  = time.Second
	DefaultProbeTimeout   = 500 * time.Millisecond
	DefaultGossipInterval = 200 * time.Millisecond
	DefaultSuspicionMult  = 4
	// The lease is three probe intervals, at least a second.
	minLease = time.Second
)

// EnsureGatewayDefaults fills in every field left unset with its default,
// nested messages included (the cluster's only when there is a cluster).
// Settings whose zero value means "off" (max_store_bytes, a durability
// section with disabled) keep it.
func EnsureGatewayDefaults(g *pb.GatewayConfig) {
	setString(&g.Name, DefaultName)
	setString(&g.DataDir, DefaultDataDir)
	setString(&g.MqttListen, DefaultMQTTListen)
	setString(&g.HttpListen, DefaultHTTPListen)
	setUint32(&g.Partitions, DefaultPartitions)
	setUint32(&g.MaxPayloadBytes, DefaultMaxPayloadBytes)

	if g.Durability == nil {
		g.Durability = &pb.Durability{}
	}
	d := g.Durability
	setDuration(&d.SyncInterval, DefaultSyncInterval)
	setDuration(&d.CheckpointInterval, DefaultCheckpointInterval)
	if d.MinFreeBytes == nil {
		d.MinFreeBytes = proto.Uint64(DefaultMinFreeBytes)
	}

	if g.Mqtt == nil {
		g.Mqtt = &pb.MqttBroker{}
	}
	m := g.Mqtt
	setUint32(&m.MaxConnections, DefaultMQTTMaxConnections)
	setDuration(&m.MaxSessionExpiry, DefaultMQTTMaxSessionExpiry)
	setUint32(&m.MaxRetained, DefaultMQTTMaxRetained)
	setUint64(&m.MaxRetainedBytes, DefaultMQTTMaxRetainedBytes)

	if g.DeadLetters == nil {
		g.DeadLetters = &pb.DeadLetters{}
	}
	setUint32(&g.DeadLetters.MaxEntries, DefaultDeadLetterEntries)
	setUint64(&g.DeadLetters.MaxBytes, DefaultDeadLetterBytes)

	if c := g.Cluster; c != nil {
		setString(&c.GossipListen, DefaultGossipListen)
		setString(&c.RemoteListen, DefaultRemoteListen)
		setUint32(&c.Replicas, DefaultReplicas)
		setString(&c.Quorum, DefaultQuorum)
		setString(&c.MinorityInput, DefaultMinorityInput)
		setDuration(&c.HandOffWait, DefaultHandOffWait)
		if c.RelayOutputs == nil {
			c.RelayOutputs = proto.Bool(true)
		}
		setUint64(&c.RelayQueueBytes, DefaultRelayQueueBytes)
		setDuration(&c.ProbeInterval, DefaultProbeInterval)
		setDuration(&c.ProbeTimeout, DefaultProbeTimeout)
		setDuration(&c.GossipInterval, DefaultGossipInterval)
		setUint32(&c.SuspicionMult, DefaultSuspicionMult)
		setDuration(&c.Lease, max(3*c.ProbeInterval.AsDuration(), minLease))
	}
}

func setString(f *string, v string) {
	if *f == "" {
		*f = v
	}
}

func setUint32(f *uint32, v uint32) {
	if *f == 0 {
		*f = v
	}
}

func setUint64(f *uint64, v uint64) {
	if *f == 0 {
		*f = v
	}
}

func setDuration(f **durationpb.Duration, v time.Duration) {
	if *f == nil || (*f).AsDuration() == 0 {
		*f = durationpb.New(v)
	}
}

// GatewayYAML renders a gateway configuration as YAML with its secrets
// (passwords, gossip keys, header values) replaced by "<redacted>".
func GatewayYAML(g *pb.GatewayConfig) ([]byte, error) {
	g = proto.Clone(g).(*pb.GatewayConfig)
	redact := func(s *string) {
		if *s != "" {
			*s = "<redacted>"
		}
	}
	for _, b := range append(slices.Clone(g.Brokers), g.Upstream) {
		if b != nil {
			redact(&b.Password)
		}
	}
	if c := g.Cluster; c != nil {
		redact(&c.GossipKey)
		for i := range c.GossipOldKeys {
			redact(&c.GossipOldKeys[i])
		}
	}
	for _, j := range g.Jobs {
		for _, o := range j.Outputs {
			if h := o.GetHttp(); h != nil {
				for k := range h.Headers {
					h.Headers[k] = "<redacted>"
				}
			}
		}
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	blockStyle(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b.Bytes(), nil
}

// blockStyle turns JSON's flow style into YAML's block style.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style == yaml.DoubleQuotedStyle {
		switch {
		case isDigits(n.Value): // protojson quotes 64-bit integers
			n.Style, n.Tag = 0, "!!int"
		case !needsQuotes(n.Value):
			n.Style = 0
		}
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func isDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func needsQuotes(s string) bool {
	var v any
	// A value YAML would read as something else (a number, true, null) or
	// that holds YAML syntax keeps its quotes.
	if s == "" || strings.ContainsAny(s, ":#{}[]&*!|>'\"%@`,\n") || yaml.Unmarshal([]byte(s), &v) != nil {
		return true
	}
	_, isString := v.(string)
	return !isString
}
