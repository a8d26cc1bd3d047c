package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// TestLoadEveryDeployment loads and validates every job under deployments/.
func TestLoadEveryDeployment(t *testing.T) {
	files, err := filepath.Glob("../../deployments/jobs/*/job.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		j, err := LoadJob(f)
		require.NoError(t, err, f)
		require.NotEmpty(t, j.Outputs, f)
	}
}

func TestYAMLAndTextProtoLoadTheSameJob(t *testing.T) {
	j, err := LoadJob("../../deployments/jobs/temperature-monitoring/job.yaml")
	require.NoError(t, err)
	require.Equal(t, "5s", j.Policy.LateArrivalTolerance.AsDuration().String())
	text, err := prototext.Marshal(j)
	require.NoError(t, err)
	again, err := ParseJob("job.textproto", text)
	require.NoError(t, err)
	require.True(t, proto.Equal(j, again))
}

func TestJobErrorsNameFileLineAndField(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	_, err := LoadJob(write("unknown.yaml", "name: j\nquery: SELECT * INTO o FROM i\ninputs:\n  - name: i\n    topik: x\n"))
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "unknown.yaml:5:")
	require.Contains(t, err.Error(), `unknown field "topik"`)

	_, err = LoadJob(write("badvalue.yaml", "name: j\nquery: SELECT * INTO o FROM i\npolicy:\n  late_arrival_tolerance: soon\n"))
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "badvalue.yaml:4:")

	_, err = LoadJob(write("undeclared.yaml", "name: j\nquery: SELECT * INTO o FROM i WHERE\n"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "query: sql: line 1, column 29")

	_, err = LoadJob(write("missing.yaml", "query: SELECT * INTO o FROM i\n"))
	require.ErrorIs(t, err, ErrInvalid)
	// Every problem is reported, not only the first.
	for _, want := range []string{"name is required", `output "o", which the job does not declare`, `input "i", which the job does not declare`} {
		require.Contains(t, err.Error(), want)
	}
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
}

func TestLoadGatewayFillsDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gw.yaml")
	require.NoError(t, os.WriteFile(p, []byte("name: gw1\n"), 0o644))
	g, err := LoadGateway(p)
	require.NoError(t, err)
	require.Equal(t, uint32(DefaultPartitions), g.Partitions)
	require.Equal(t, DefaultMQTTListen, g.MqttListen)
	require.Equal(t, uint32(DefaultMaxPayloadBytes), g.MaxPayloadBytes)
}

// A cluster section is checked with the rest: every problem at once, and
// a misspelled field with its line.
func TestGatewayClusterValidation(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string) error {
		p := filepath.Join(dir, "gw.yaml")
		require.NoError(t, os.WriteFile(p, []byte(yaml), 0o644))
		_, err := LoadGateway(p)
		return err
	}
	require.NoError(t, load("name: gw1\ncluster:\n  seeds: [127.0.0.1:7946]\n  probe_interval: 0.2s\n"))
	err := load("name: gw#1\ndurability: {disabled: true}\ncluster:\n  replicas: 9\n  quorum: most\n  minority_input: drop\n  gossip_key: c2hvcnQ=\n  lease: -1s\n")
	require.ErrorIs(t, err, ErrInvalid)
	for _, want := range []string{"needs durable state", "without '#'", "replicas must be at most 5", `quorum "most"`, `minority_input "drop": log or refuse`, "gossip_key: 5 bytes", "lease must not be negative"} {
		require.Contains(t, err.Error(), want)
	}
	err = load("name: gw1\ncluster:\n  seeds: [a]\n  probe_intervall: 1s\n")
	require.Error(t, err)
	require.Contains(t, err.Error(), "4:")
}
