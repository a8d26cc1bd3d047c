package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.9.9.9:1": true, "[::1]:8080": true, "localhost:80": true, "LOCALHOST:1": true,
		":1883": false, "0.0.0.0:1883": false, "[::]:1883": false, "10.0.0.7:1883": false, "gw1.plant:7946": false, "": false,
	} {
		require.Equal(t, want, IsLoopback(addr), addr)
	}
}

// TestExposedListenersRefused: a gateway configuration that puts a plain
// or unauthenticated surface off loopback is invalid unless insecure, and
// each exposure is named; the secure equivalent is valid.
func TestExposedListenersRefused(t *testing.T) {
	exposed := func() *pb.GatewayConfig {
		g := &pb.GatewayConfig{Name: "gw1", MqttListen: "0.0.0.0:1883", HttpListen: ":8080",
			Mqtt:    &pb.MqttBroker{TlsListen: "0.0.0.0:8883", Tls: &pb.ServerTLS{CertFile: "gw.crt", KeyFile: "gw.key"}},
			Cluster: &pb.Cluster{GossipListen: "10.0.0.7:7946", RemoteListen: "10.0.0.7:7947"}}
		EnsureGatewayDefaults(g)
		return g
	}
	g := exposed()
	err := ValidateGateway(g)
	require.ErrorIs(t, err, ErrInvalid)
	for _, want := range []string{"mqtt_listen 0.0.0.0:1883 is plain MQTT", "mqtt.tls_listen 0.0.0.0:8883 accepts anonymous",
		"http_listen :8080 is plain HTTP", "http_listen :8080 has no authentication", "cluster link (remote_listen 10.0.0.7:7947)",
		"gossip (gossip_listen 10.0.0.7:7946)", "--insecure"} {
		require.Contains(t, err.Error(), want)
	}
	require.Len(t, Exposures(g), 6)

	g.Insecure = true
	require.NoError(t, ValidateGateway(g), "insecure accepts the risk")
	require.Len(t, Exposures(g), 6, "and the exposures are still listed, for the warning")

	g = exposed()
	g.MqttListen = "127.0.0.1:1883"
	g.Mqtt.PasswordFile = "users"
	g.Admin = &pb.Admin{Tls: &pb.ServerTLS{CertFile: "gw.crt", KeyFile: "gw.key"}, TokensFile: "tokens"}
	g.Cluster.Tls = &pb.ServerTLS{CertFile: "gw.crt", KeyFile: "gw.key", CaFile: "ca.crt"}
	g.Cluster.GossipKeyFile = "gossip.key"
	require.NoError(t, ValidateGateway(g))
	require.Empty(t, Exposures(g))

	g.Mqtt.AllowAnonymous = true
	require.ErrorContains(t, ValidateGateway(g), "accepts anonymous")
}

func TestSecuritySettingsChecked(t *testing.T) {
	g := &pb.GatewayConfig{Name: "gw1",
		Admin:   &pb.Admin{Tls: &pb.ServerTLS{CertFile: "a.crt"}, AllowedOrigins: []string{"plant.example"}},
		Mqtt:    &pb.MqttBroker{TlsListen: "127.0.0.1:8883"},
		Cluster: &pb.Cluster{Tls: &pb.ServerTLS{CertFile: "a.crt", KeyFile: "a.key"}, GossipKey: "AAAAAAAAAAAAAAAAAAAAAA==", GossipKeyFile: "k", GossipOldKeys: []string{"xx"}}}
	EnsureGatewayDefaults(g)
	err := ValidateGateway(g)
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{"admin.tls needs cert_file and key_file", `admin.allowed_origins "plant.example"`,
		"mqtt.tls_listen 127.0.0.1:8883 needs mqtt.tls", "cluster.tls: ca_file is required", "gossip_key and gossip_key_file are both set",
		"cluster.gossip_old_keys[0]"} {
		require.True(t, strings.Contains(msg, want), "want %q in:\n%s", want, msg)
	}
}
