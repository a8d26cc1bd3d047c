package config

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files of TestGatewayDefaults")

// TestGatewayDefaults: what a gateway runs with when its configuration
// says nothing, alone and in a cluster. A change here changes every
// gateway that relies on a default: review the diff (go test
// ./internal/config -run TestGatewayDefaults -rewrite).
func TestGatewayDefaults(t *testing.T) {
	for _, c := range []struct {
		golden string
		cfg    *pb.GatewayConfig
	}{
		{"defaults.yaml", &pb.GatewayConfig{}},
		{"defaults-cluster.yaml", &pb.GatewayConfig{Cluster: &pb.Cluster{}}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			EnsureGatewayDefaults(c.cfg)
			require.NoError(t, ValidateGateway(c.cfg), "the defaults are a valid configuration")
			got, err := GatewayYAML(c.cfg)
			require.NoError(t, err)
			path := filepath.Join("testdata", c.golden)
			if *rewrite {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			// What is printed loads back to the same configuration.
			file := filepath.Join(t.TempDir(), "gw.yaml")
			require.NoError(t, os.WriteFile(file, got, 0o644))
			loaded, err := LoadGateway(file)
			require.NoError(t, err)
			require.True(t, proto.Equal(c.cfg, loaded), "printed %s\nloaded %v", got, loaded)
			// Filling in twice changes nothing.
			again := proto.Clone(c.cfg).(*pb.GatewayConfig)
			EnsureGatewayDefaults(again)
			gotAgain, err := GatewayYAML(again)
			require.NoError(t, err)
			require.Equal(t, string(got), string(gotAgain))
		})
	}
}

// TestGatewayYAMLRedacts: secrets never reach the printed configuration.
func TestGatewayYAMLRedacts(t *testing.T) {
	g := &pb.GatewayConfig{
		Brokers:  []*pb.ExternalBroker{{Url: "tcp://b:1883", Password: "hunter2"}},
		Upstream: &pb.ExternalBroker{Url: "tcp://u:1883", Password: "s3cret"},
		Cluster:  &pb.Cluster{GossipKey: "a2V5a2V5a2V5a2V5a2V5aw==", GossipOldKeys: []string{"b2xkb2xkb2xkb2xkb2xkbw=="}},
		Jobs: []*pb.Job{{Name: "j", Outputs: []*pb.JobOutput{{Name: "o", Sink: &pb.JobOutput_Http{Http: &pb.HttpSink{Url: "https://x",
			Headers: map[string]string{"Authorization": "Bearer t0ken"}}}}}}},
	}
	out, err := GatewayYAML(g)
	require.NoError(t, err)
	for _, secret := range []string{"hunter2", "s3cret", "a2V5a2V5", "b2xkb2xk", "t0ken"} {
		require.NotContains(t, string(out), secret)
	}
	require.Contains(t, string(out), "<redacted>")
	require.Equal(t, "hunter2", g.Brokers[0].Password, "the configuration itself is left alone")
}
