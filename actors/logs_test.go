package actors

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/logging"
	"github.com/millstream/millstream/internal/logging/logtest"
	"github.com/millstream/millstream/internal/mqttwire"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestGatewayLogIsOneJSONStream: a gateway's own lines, its actor
// system's, and the embedded broker's (a client connecting with keep-alive
// 0 and dropping its connection) all go through the gateway's handler: one
// JSON object per line, no terminal colour codes, no empty message, the
// libraries' routine lines at debug, each library's lines with its
// component.
func TestGatewayLogIsOneJSONStream(t *testing.T) {
	var buf logtest.Buffer
	logger, err := logging.New(&buf, "json", "debug")
	require.NoError(t, err)
	g := New(Config{Partitions: 2, Logger: logger}, Rows(&countingSink{}), nil)
	b, err := StartBroker(g, BrokerOptions{Listen: "127.0.0.1:0", Logger: logger})
	require.NoError(t, err)

	// The fault tests' publisher: keep-alive 0, then the socket just
	// closes (EOF on the broker's side).
	conn, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	_, err = conn.Write(mqttwire.Connect("dev-eof", 0))
	require.NoError(t, err)
	hdr, body, err := mqttwire.ReadPacket(bufio.NewReader(conn))
	require.NoError(t, err)
	require.True(t, mqttwire.ConnackOK(append([]byte{hdr, 2}, body...)), "CONNACK %x %x", hdr, body)
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool { return logtest.Count(buf.Records(t), "client disconnected", "") > 0 },
		5*time.Second, 10*time.Millisecond, "the broker did not log the disconnect")

	require.NoError(t, b.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, g.Close(ctx))

	recs := buf.Records(t)
	require.NotEmpty(t, recs)
	require.NotContains(t, buf.String(), "\x1b[", "terminal colour codes in the log")
	for _, r := range recs {
		require.NotEmpty(t, r["msg"], "a line without a message: %v", r)
		require.NotEqual(t, "WARN", r["level"], "a warning for routine events: %v", r)
	}
	byMsg := func(msg string) map[string]any {
		for _, r := range recs {
			if r["msg"] == msg {
				return r
			}
		}
		t.Fatalf("no %q line in:\n%v", msg, recs)
		return nil
	}
	started := byMsg("actor system started")
	require.Equal(t, "DEBUG", started["level"])
	require.Equal(t, "actor", started["component"])
	gone := byMsg("client disconnected")
	require.Equal(t, "DEBUG", gone["level"])
	require.Equal(t, "mqtt", gone["component"])
	require.Contains(t, gone["error"], "EOF")
	keepalive := byMsg("client keepalive is below minimum recommended value and may exhibit connection instability")
	require.Equal(t, "DEBUG", keepalive["level"])
	require.Equal(t, "mqtt", byMsg("attached listener")["component"])
	require.Equal(t, "DEBUG", byMsg("added hook")["level"])
}

// TestMQTTLogRewrites: mochi's listeners log a connection's end as a
// warning with an empty message; it becomes "client disconnected", at
// debug for a client going away and at info for a connection ended by an
// error.
func TestMQTTLogRewrites(t *testing.T) {
	var buf logtest.Buffer
	logger, err := logging.New(&buf, "json", "debug")
	require.NoError(t, err)
	l := mqttLogger(logger)
	l.Warn("", "error", io.EOF)
	l.Warn("", "error", errors.New("malformed packet: bad remaining length"))
	l.Warn("error processing packet", "error", errors.New("protocol violation"))
	recs := buf.Records(t)
	require.Len(t, recs, 3)
	require.Equal(t, "client disconnected", recs[0]["msg"])
	require.Equal(t, "DEBUG", recs[0]["level"])
	require.Equal(t, "client disconnected", recs[1]["msg"])
	require.Equal(t, "INFO", recs[1]["level"])
	require.Equal(t, "malformed packet: bad remaining length", recs[1]["error"])
	require.Equal(t, "WARN", recs[2]["level"], "mochi's real warnings stay warnings")
	for _, r := range recs {
		require.Equal(t, "mqtt", r["component"])
	}

	// At info, a client going away is not logged at all.
	buf = logtest.Buffer{}
	logger, err = logging.New(&buf, "json", "info")
	require.NoError(t, err)
	mqttLogger(logger).Warn("", "error", io.EOF)
	require.Empty(t, buf.Records(t))
}

// TestExternalBrokerOutageLoggedOnce: the gateway's two connections to an
// external broker (an upstream output and a source) both lose it; that is
// one warning, and one info line with the downtime once both are back.
func TestExternalBrokerOutageLoggedOnce(t *testing.T) {
	ext := New(Config{Partitions: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Rows(&countingSink{}), nil)
	defer func() { require.NoError(t, ext.Close(context.Background())) }()
	b, err := StartBroker(ext, BrokerOptions{Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	addr := b.Addr()

	var buf logtest.Buffer
	logger, err := logging.New(&buf, "json", "info")
	require.NoError(t, err)
	g := New(Config{Partitions: 1, Logger: logger}, Rows(&countingSink{}), nil)
	defer func() { require.NoError(t, g.Close(context.Background())) }()
	up, err := ConnectExternal(&pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw-up"}, nil, nil, logger)
	require.NoError(t, err)
	defer up.Close()
	src, err := ConnectExternal(&pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw-src", Topics: []string{"devices/#"}}, g, g.Topics, logger)
	require.NoError(t, err)
	defer src.Close()
	require.Eventually(t, func() bool { return up.Connected() && src.Connected() }, 5*time.Second, 10*time.Millisecond)

	const lost, back = "external MQTT broker connection lost; reconnecting", "reconnected to external MQTT broker"
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return !up.Connected() && !src.Connected() }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // both loss handlers ran
	recs := buf.Records(t)
	require.Equal(t, 1, logtest.Count(recs, lost, "WARN"), "one warning for one broker lost: %v", recs)

	b, err = StartBroker(ext, BrokerOptions{Listen: addr})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	require.Eventually(t, func() bool { return logtest.Count(buf.Records(t), back, "INFO") > 0 }, 20*time.Second, 50*time.Millisecond,
		"no reconnected line")
	require.True(t, up.Connected() && src.Connected(), "reconnected is logged once every connection is back")
	time.Sleep(200 * time.Millisecond)
	recs = buf.Records(t)
	require.Equal(t, 1, logtest.Count(recs, lost, ""), "%v", recs)
	require.Equal(t, 1, logtest.Count(recs, back, ""), "%v", recs)
	for _, r := range recs {
		if r["msg"] == back {
			d := time.Duration(r["downtime"].(float64)) // slog's JSON: nanoseconds
			require.Greater(t, d, 200*time.Millisecond, "the downtime is measured from the loss")
			require.Equal(t, "tcp://"+addr, r["broker"])
		}
	}
}

// countingSink counts rows per job/output.
type countingSink struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingSink) Write(job, output string, _ int64, _ *value.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[job+"/"+output]++
}

func (c *countingSink) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}
