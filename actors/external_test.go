package actors

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

func TestExternalBrokerPasswordReferences(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("from-file\r\n"), 0o600))
	t.Setenv("BROKER_PW_FOR_TEST", "from-env")
	for _, tc := range []struct {
		cfg  *pb.ExternalBroker
		want string
		err  string
	}{
		{&pb.ExternalBroker{Password: "inline"}, "inline", ""},
		{&pb.ExternalBroker{PasswordFile: pw}, "from-file", ""},
		{&pb.ExternalBroker{PasswordEnv: "BROKER_PW_FOR_TEST"}, "from-env", ""},
		{&pb.ExternalBroker{PasswordEnv: "BROKER_PW_UNSET"}, "", "BROKER_PW_UNSET is not set"},
		{&pb.ExternalBroker{PasswordFile: filepath.Join(dir, "none")}, "", "password_file"},
		{&pb.ExternalBroker{Password: "a", PasswordEnv: "BROKER_PW_FOR_TEST"}, "", "give one of"},
	} {
		got, err := brokerPassword(tc.cfg)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}
