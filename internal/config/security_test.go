package config

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

func TestValidateSecurityPaths(t *testing.T) {
	g := &pb.GatewayConfig{
		DataRoots: []string{"/srv/millstream", " "},
		Admin:     &pb.Admin{Tls: &pb.ServerTLS{CertFile: "gw.crt"}},
		Brokers:   []*pb.ExternalBroker{{Url: "tcp://b:1883", Password: "x", PasswordEnv: "PW"}},
	}
	EnsureGatewayDefaults(g)
	err := ValidateGateway(g)
	require.ErrorIs(t, err, ErrInvalid)
	for _, want := range []string{"data_roots[1] is empty", "admin.tls needs cert_file and key_file", "give one of password"} {
		require.ErrorContains(t, err, want)
	}
	g.DataRoots, g.Admin, g.Brokers = []string{"/srv"}, &pb.Admin{Tls: &pb.ServerTLS{CertFile: "a", KeyFile: "b"}}, nil
	require.NoError(t, ValidateGateway(g))
}
