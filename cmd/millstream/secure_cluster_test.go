package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/testutil"
)

// TestSecureClusterFromNothing follows README "Securing a gateway
// cluster": deployments/secure-cluster/setup.sh makes the CA,
// certificates, keys, token, passwords and configurations; three gateway
// processes form an mTLS cluster; a job is deployed with an admin client
// certificate over HTTPS; a device with a certificate and one with a
// password publish over MQTTS; a reader with a password gets the alerts.
// Unauthenticated and wrong-role attempts change nothing.
func TestSecureClusterFromNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three gateway processes; runs without -short")
	}
	dir := t.TempDir()
	type addrs struct{ mqtt, mqtts, http, gossip, remote string }
	var gws [3]addrs
	env := os.Environ()
	for i := range gws {
		gws[i] = addrs{testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)}
		for k, v := range map[string]string{"MQTT": gws[i].mqtt, "MQTTS": gws[i].mqtts, "HTTP": gws[i].http, "GOSSIP": gws[i].gossip, "REMOTE": gws[i].remote} {
			env = append(env, fmt.Sprintf("GW%d_%s=%s", i+1, k, v))
		}
	}
	setup := exec.Command("../../deployments/secure-cluster/setup.sh", testutil.Binary(t), dir)
	setup.Env = env
	out, err := setup.CombinedOutput()
	require.NoError(t, err, string(out))
	certs := filepath.Join(dir, "certs")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}

	// Moved off loopback, the same configurations are still valid: every
	// surface has TLS and authentication but the plain local MQTT port.
	g, err := config.LoadGateway(filepath.Join(dir, "gw2.yaml"))
	require.NoError(t, err)
	g.Mqtt.TlsListen, g.HttpListen, g.Cluster.GossipListen, g.Cluster.RemoteListen = "0.0.0.0:8883", "0.0.0.0:8443", "10.0.0.12:7946", "10.0.0.12:7947"
	require.Empty(t, config.Exposures(g))

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM([]byte(read("certs/ca.crt"))))
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for i := range gws {
		gw := testutil.NewGateway(t, filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i+1)), gws[i].http)
		gw.AdminClient, gw.AdminScheme = https, "https"
		gw.Start()
	}
	admin1 := "https://" + gws[0].http
	require.Eventually(t, func() bool {
		resp, err := https.Get(admin1 + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "gw1 hears from a majority")

	jobFile := filepath.Join(dir, "hot.yaml")
	require.NoError(t, os.WriteFile(jobFile, []byte(`name: hot
query: SELECT deviceId, temperature INTO alerts FROM readings WHERE temperature > 100
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: alerts, mqtt: {qos: 1}}]
`), 0o600))
	t.Setenv("MILLSTREAM_ADMIN_TOKEN", read("viewer.token"))
	code, _, stderr := runCLI(t, "job", "deploy", "--admin", admin1, "--ca", filepath.Join(certs, "ca.crt"), jobFile)
	require.Equal(t, 1, code, "the viewer token is read-only")
	require.Contains(t, stderr, "403")
	t.Setenv("MILLSTREAM_ADMIN_TOKEN", "")
	code, _, stderr = runCLI(t, "job", "deploy", "--admin", admin1, "--ca", filepath.Join(certs, "ca.crt"), jobFile)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "401")
	code, _, stderr = runCLI(t, "job", "deploy", "--admin", admin1, "--ca", filepath.Join(certs, "ca.crt"),
		"--cert", filepath.Join(certs, "admin-ops.crt"), "--key", filepath.Join(certs, "admin-ops.key"), jobFile)
	require.Equal(t, 0, code, stderr)
	for i := range gws {
		require.Eventually(t, func() bool {
			req, _ := http.NewRequest(http.MethodGet, "https://"+gws[i].http+"/v1/jobs/hot", nil)
			req.Header.Set("Authorization", "Bearer "+read("viewer.token"))
			resp, err := https.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "the job reaches gw%d", i+1)
	}

	mqtts := func(addr, id string, opts func(*paho.ClientOptions, *tls.Config)) (paho.Client, error) {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		o := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(id).SetAutoReconnect(false).SetConnectRetry(false)
		if opts != nil {
			opts(o, tc)
		}
		o.SetTLSConfig(tc)
		c := paho.NewClient(o)
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(10*time.Second))
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		t.Cleanup(func() { c.Disconnect(50) })
		return c, nil
	}
	_, err = mqtts(gws[0].mqtts, "press-3", nil)
	require.Error(t, err, "no credentials: refused")
	_, err = mqtts(gws[0].mqtts, "press-2", func(o *paho.ClientOptions, _ *tls.Config) { o.SetUsername("press-2").SetPassword("guess") })
	require.Error(t, err, "wrong password: refused")

	// Each gateway's broker has a reader; outputs are cluster-wide, so
	// each reader gets every alert once, whichever gateway emitted it.
	var mu sync.Mutex
	alerts := make([]map[string]int, len(gws))
	for i := range gws {
		alerts[i] = map[string]int{}
		reader, err := mqtts(gws[i].mqtts, fmt.Sprintf("dashboard/%d", i), func(o *paho.ClientOptions, _ *tls.Config) {
			o.SetUsername("dashboard").SetPassword(read("dashboard.password"))
		})
		require.NoError(t, err)
		tok := reader.Subscribe("millstream/hot/alerts", 1, func(_ paho.Client, m paho.Message) {
			var row struct{ DeviceID string }
			if json.Unmarshal(m.Payload(), &row) == nil {
				mu.Lock()
				alerts[i][row.DeviceID]++
				mu.Unlock()
			}
		})
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
		tok = reader.Subscribe("devices/#", 1, func(paho.Client, paho.Message) {})
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.Equal(t, byte(0x80), tok.(*paho.SubscribeToken).Result()["devices/#"], "a reader cannot read telemetry")
	}

	key, err := tls.LoadX509KeyPair(filepath.Join(certs, "device-press-1.crt"), filepath.Join(certs, "device-press-1.key"))
	require.NoError(t, err)
	press1, err := mqtts(gws[1].mqtts, "press-1", func(_ *paho.ClientOptions, tc *tls.Config) { tc.Certificates = []tls.Certificate{key} })
	require.NoError(t, err)
	press2, err := mqtts(gws[0].mqtts, "press-2", func(o *paho.ClientOptions, _ *tls.Config) {
		o.SetUsername("press-2").SetPassword(read("press-2.password"))
	})
	require.NoError(t, err)
	publish := func(c paho.Client, topic, payload string) {
		tok := c.Publish(topic, 1, false, payload)
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
	}
	publish(press1, "devices/press-1/messages/events", `{"deviceId":"press-1","seq":1,"temperature":120}`)
	publish(press1, "devices/press-1/messages/events", `{"deviceId":"press-1","seq":2,"temperature":50}`)
	publish(press1, "devices/press-2/messages/events", `{"deviceId":"press-2","seq":9,"temperature":999}`) // as another device: dropped
	publish(press2, "devices/press-2/messages/events", `{"deviceId":"press-2","seq":1,"temperature":130}`)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alerts {
			if a["press-1"] != 1 || a["press-2"] != 1 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	for i, a := range alerts {
		require.Equal(t, map[string]int{"press-1": 1, "press-2": 1}, a, "reader on gw%d: each alert once; the forged reading never counted", i+1)
	}
}
