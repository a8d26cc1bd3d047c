package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/testutil"
)

// TestPasswdLineLogsInDevice: a line made by "millstream passwd" lets the
// device log in to a gateway with that password file, and no other
// password does.
func TestPasswdLineLogsInDevice(t *testing.T) {
	old := stdin
	t.Cleanup(func() { stdin = old })
	stdin = strings.NewReader("s3cret-press\n")
	code, line, stderr := runCLI(t, "passwd", "--role", "device", "press-1")
	require.Equal(t, 0, code, stderr)
	require.True(t, strings.HasPrefix(line, "press-1 device $2"), line)
	require.NotContains(t, line, "s3cret")
	code, gen, stderr := runCLI(t, "passwd", "--role", "reader", "--generate", "dashboard")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, gen, "password (shown once")
	stdin = strings.NewReader("")
	code, _, _ = runCLI(t, "passwd", "--role", "device", "press-2")
	require.Equal(t, 2, code, "no password given")
	code, _, _ = runCLI(t, "passwd", "--role", "root", "--generate", "press-2")
	require.Equal(t, 1, code, "unknown role")

	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	require.NoError(t, os.WriteFile(users, []byte(line), 0o600))
	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("name: pw\nmqtt_listen: "+mqtt+"\nhttp_listen: "+admin+"\ndata_dir: "+filepath.Join(dir, "data")+
		"\nmqtt: {password_file: "+users+"}\n"), 0o644))
	testutil.StartGateway(t, cfg, admin)
	connect := func(user, password string) error {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID(user).SetUsername(user).SetPassword(password).
			SetAutoReconnect(false).SetConnectRetry(false))
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(10*time.Second))
		if tok.Error() == nil {
			c.Disconnect(50)
		}
		return tok.Error()
	}
	require.NoError(t, connect("press-1", "s3cret-press"))
	require.Error(t, connect("press-1", "guess"))
	require.Error(t, connect("press-9", "s3cret-press"))
}
