package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/mqttwire"
	"github.com/millstream/millstream/internal/testutil"
)

// TestReadyzSaysInputBrokerDown: a gateway whose input broker cannot be
// reached is not ready, and says which broker; once the broker is up it
// is ready.
func TestReadyzSaysInputBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two gateway processes; runs without -short")
	}
	dir := t.TempDir()
	brokerMQTT, brokerAdmin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	reader, readerAdmin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	brokerCfg := write("broker.yaml", fmt.Sprintf("name: broker\nmqtt_listen: %s\nhttp_listen: %s\ndata_dir: %s\n", brokerMQTT, brokerAdmin, filepath.Join(dir, "b")))
	readerCfg := write("reader.yaml", fmt.Sprintf(`name: reader
mqtt_listen: %s
http_listen: %s
data_dir: %s
brokers: [{url: "tcp://%s"}]
jobs:
  - name: hot
    query: SELECT deviceId INTO alerts FROM readings WHERE temperature > 100
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs: [{name: alerts, log: {}}]
`, reader, readerAdmin, filepath.Join(dir, "r"), brokerMQTT))
	testutil.StartGateway(t, readerCfg, readerAdmin)
	code, body := readyz(t, readerAdmin)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "input: input broker unreachable: tcp://"+brokerMQTT)
	testutil.StartGateway(t, brokerCfg, brokerAdmin)
	require.Eventually(t, func() bool { code, _ := readyz(t, readerAdmin); return code == http.StatusOK }, 30*time.Second, 100*time.Millisecond)
}

// TestReadyzWaitsForInputSubscription: a gateway connected to its input
// broker is not ready until the broker confirmed its subscriptions. A
// device whose message reaches the broker before the gateway's session
// has them is acknowledged by the broker and delivered to no one (the
// nemesis lost a device's first reading that way). A proxy between the
// gateway and mosquitto holds the SUBSCRIBE back.
func TestReadyzWaitsForInputSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway process and mosquitto; runs without -short")
	}
	mosq, _ := testutil.Mosquitto(t, "", "")
	proxy := newSubscribeHolder(t, mosq)
	dir := t.TempDir()
	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`name: reader
mqtt_listen: %s
http_listen: %s
data_dir: %s
brokers: [{url: "tcp://%s", client_id: reader}]
jobs:
  - name: hot
    query: SELECT deviceId INTO alerts FROM readings WHERE temperature > 100
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs: [{name: alerts, log: {}}]
`, mqtt, admin, filepath.Join(dir, "data"), proxy.addr)), 0o644))
	testutil.StartGateway(t, cfgPath, admin)
	require.Eventually(t, proxy.subscribeHeld, 10*time.Second, 10*time.Millisecond, "the gateway subscribes")
	for i := 0; i < 5; i++ {
		code, body := readyz(t, admin)
		require.Equal(t, http.StatusServiceUnavailable, code, "ready while its subscription is not confirmed")
		require.Contains(t, body, "not subscribed on the input broker yet: tcp://"+proxy.addr)
		time.Sleep(50 * time.Millisecond)
	}
	proxy.release()
	require.Eventually(t, func() bool { code, _ := readyz(t, admin); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
}

// subscribeHolder is a TCP proxy to an MQTT broker that forwards every
// packet but holds the clients' SUBSCRIBE packets until release.
type subscribeHolder struct {
	addr     string
	held     atomic.Bool
	released chan struct{}
}

func newSubscribeHolder(t *testing.T, broker string) *subscribeHolder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &subscribeHolder{addr: ln.Addr().String(), released: make(chan struct{})}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		h.release()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", broker)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, true)
			conns.Store(up, true)
			wg.Add(2)
			go func() { defer wg.Done(); defer up.Close(); h.pump(c, up) }()
			go func() { defer wg.Done(); defer c.Close(); _, _ = io.Copy(c, up) }()
		}
	}()
	return h
}

// pump copies MQTT packets from the client to the broker, one at a time.
func (h *subscribeHolder) pump(from io.Reader, to io.Writer) {
	r := bufio.NewReader(from)
	for {
		header, body, err := mqttwire.ReadPacket(r)
		if err != nil {
			return
		}
		if header>>4 == 8 { // SUBSCRIBE
			h.held.Store(true)
			<-h.released
		}
		if _, err := to.Write(append(mqttwire.AppendRemaining([]byte{header}, len(body)), body...)); err != nil {
			return
		}
	}
}

func (h *subscribeHolder) subscribeHeld() bool { return h.held.Load() }

func (h *subscribeHolder) release() {
	select {
	case <-h.released:
	default:
		close(h.released)
	}
}
