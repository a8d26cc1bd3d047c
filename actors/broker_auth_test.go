package actors

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pahopk "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/mqttwire"
	"github.com/millstream/millstream/internal/testutil"
)

// These tests attack the embedded broker over real sockets on 127.0.0.1
// and check that what was refused changed nothing (events ingested,
// messages delivered).

// secureGateway is an in-memory gateway whose job reads the default
// device topic and publishes each event to millstream/j/o, behind a
// broker started with the given options.
type secureGateway struct {
	g *Gateway
	b *Broker
}

func startSecureGateway(t *testing.T, opts BrokerOptions) *secureGateway {
	t.Helper()
	noBrokerGoroutinesLeft(t)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT deviceId, temperature INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, mqtt: {qos: 1}}]\n"))
	require.NoError(t, err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := NewOutputs(nil, io.Discard)
	g := New(Config{Partitions: 2, Logger: quiet}, outs, nil)
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	opts.Logger = quiet
	b, err := StartBroker(g, opts)
	require.NoError(t, err)
	outs.SetPublisher(b)
	g.SetPublisher(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		require.NoError(t, b.Close())
		require.NoError(t, g.Close(ctx))
		require.NoError(t, outs.Close())
		cancel()
	})
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	return &secureGateway{g: g, b: b}
}

// noBrokerGoroutinesLeft checks, once the test's cleanups have run, that
// no goroutine of the broker, its listeners or a paho client is left.
func noBrokerGoroutinesLeft(t *testing.T) {
	// (A test before this one that failed half-way may have left them.)
	t.Cleanup(func() {
		testutil.NoGoroutinesLeft(t, "mochi-mqtt/server", "actors.(*brokerListener)", "actors.(*Broker)", "paho.mqtt.golang")
	})
}

// testPKI is a cluster CA, the gateway's server certificate and a second,
// unrelated CA.
type testPKI struct {
	ca, other  *certs.Authority
	caFile     string
	cert, key  string
	serverPool *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("millstream test CA", time.Hour)
	require.NoError(t, err)
	other, err := certs.NewCA("another CA", time.Hour)
	require.NoError(t, err)
	caFiles, err := ca.WriteCA(dir)
	require.NoError(t, err)
	gw, err := ca.WriteIssued(dir, "gw", certs.Request{Kind: certs.Gateway, Name: "gw"})
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &testPKI{ca: ca, other: other, caFile: caFiles.Cert, cert: gw.Cert, key: gw.Key, serverPool: pool}
}

// clientTLS trusts the gateway and presents a certificate issued by ca, if
// any.
func (p *testPKI) clientTLS(t *testing.T, ca *certs.Authority, r certs.Request) *tls.Config {
	t.Helper()
	conf := &tls.Config{RootCAs: p.serverPool, MinVersion: tls.VersionTLS12}
	if ca != nil {
		certPEM, keyPEM, err := ca.Issue(r)
		require.NoError(t, err)
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		require.NoError(t, err)
		// Presented whatever CAs the server asks for (Go's client would
		// otherwise withhold a certificate of another CA).
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return conf
}

// writePasswords writes a password file (bcrypt's lowest cost: tests
// connect often) of "user role password" triples.
func writePasswords(t *testing.T, users ...[3]string) string {
	t.Helper()
	var lines []string
	for _, u := range users {
		line, err := passwordLine(u[0], u[1], u[2], bcrypt.MinCost)
		require.NoError(t, err)
		lines = append(lines, line)
	}
	p := filepath.Join(t.TempDir(), "mqtt-passwords")
	require.NoError(t, os.WriteFile(p, []byte("# test users\n\n"+strings.Join(lines, "\n")+"\n"), 0o600))
	return p
}

var testUsers = [][3]string{{"press-2", MQTTRoleDevice, "press-2-secret"}, {"dash", MQTTRoleReader, "dash-secret"}, {"ops", MQTTRoleAdmin, "ops-secret"}}

// dial connects a paho MQTT 3.1.1 client; the client is disconnected at
// cleanup.
func dial(t *testing.T, url, clientID string, set func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetAutoReconnect(false).
		SetProtocolVersion(4).SetConnectTimeout(5 * time.Second).SetCleanSession(true)
	if set != nil {
		set(opts)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second), "CONNECT unanswered")
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func login(user, password string) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(password) }
}

func mustDial(t *testing.T, url, clientID string, set func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	c, err := dial(t, url, clientID, set)
	require.NoError(t, err)
	return c
}

// suback subscribes and returns the granted QoS, or 0x80 for a refusal.
func suback(t *testing.T, c paho.Client, filter string, h paho.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, h)
	require.True(t, tok.WaitTimeout(5*time.Second), "SUBSCRIBE unanswered")
	key := filter
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, key, _ = strings.Cut(rest, "/") // paho's key for a shared subscription
	}
	return tok.(*paho.SubscribeToken).Result()[key]
}

// collector records the messages a subscription receives, as topics, and
// as "topic payload".
type collector struct {
	mu       sync.Mutex
	topics   []string
	messages []string
}

func (c *collector) handle(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	c.topics = append(c.topics, m.Topic())
	c.messages = append(c.messages, m.Topic()+" "+string(m.Payload()))
	c.mu.Unlock()
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.topics...)
}

func (c *collector) gotMessages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.messages...)
}

func publishOK(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	require.True(t, tok.WaitTimeout(5*time.Second), "QoS 1 publish to %s not acknowledged", topic)
	require.NoError(t, tok.Error())
}

// deniedPublish publishes at QoS 1 where the ACLs forbid it: an MQTT
// 3.1.1 client gets a PUBACK (there is no negative one; a closed
// connection would have it resend forever) and stays connected.
func deniedPublish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	publishOK(t, c, topic, payload)
	require.True(t, c.IsConnectionOpen())
}

// TestBrokerAuthRefusesAnonymousAndBadCredentials: with a password file,
// clients without credentials, with a wrong password, an unknown user, or
// a device's password but another client id are refused, and counted.
func TestBrokerAuthRefusesAnonymousAndBadCredentials(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{PasswordFile: writePasswords(t, testUsers...)})
	url := "tcp://" + gw.b.Addr()

	_, err := dial(t, url, "press-2", nil)
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "anonymous client accepted")
	_, err = dial(t, url, "press-2", login("press-2", "wrong"))
	require.ErrorIs(t, err, pahopk.ErrorRefusedBadUsernameOrPassword)
	_, err = dial(t, url, "nobody", login("nobody", "press-2-secret"))
	require.ErrorIs(t, err, pahopk.ErrorRefusedBadUsernameOrPassword)
	_, err = dial(t, url, "press-1", login("press-2", "press-2-secret"))
	require.ErrorIs(t, err, pahopk.ErrorRefusedIDRejected, "a device connected under another device's client id")
	_, err = dial(t, url, "press-2", login("dash", "dash-secret"))
	require.ErrorIs(t, err, pahopk.ErrorRefusedIDRejected, "a reader took a device's client id")

	// Right password twice (the second from the cache), then a wrong one:
	// the cache must not accept it.
	mustDial(t, url, "press-2", login("press-2", "press-2-secret")).Disconnect(50)
	dev := mustDial(t, url, "press-2", login("press-2", "press-2-secret"))
	_, err = dial(t, url, "press-2", login("press-2", "press-2-secret!"))
	require.ErrorIs(t, err, pahopk.ErrorRefusedBadUsernameOrPassword)
	require.True(t, dev.IsConnectionOpen(), "a refused client took over the device's session")
	mustDial(t, url, "dash/wall-1", login("dash", "dash-secret"))
	mustDial(t, url, "anything", login("ops", "ops-secret"))

	st := gw.b.SecurityStats()
	require.Equal(t, uint64(1), st.ConnectRefused["not_authorized"])
	require.Equal(t, uint64(3), st.ConnectRefused["bad_credentials"])
	require.Equal(t, uint64(2), st.ConnectRefused["client_id"])
	require.Zero(t, gw.g.Stats().EventsIn)
}

// TestBrokerAclDevice: a device publishes under its own topics only and
// subscribes to its own twin only; refused publishes are neither ingested
// nor delivered, and counted.
func TestBrokerAclDevice(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{PasswordFile: writePasswords(t, testUsers...)})
	url := "tcp://" + gw.b.Addr()
	var spy collector
	admin := mustDial(t, url, "ops-1", login("ops", "ops-secret"))
	require.Equal(t, byte(1), suback(t, admin, "#", spy.handle), "an admin may subscribe to everything")

	dev := mustDial(t, url, "press-2", login("press-2", "press-2-secret"))
	var own collector
	for _, f := range []string{"#", "devices/#", "devices/+/twin/desired", "devices/press-1/#", "devices/press-1/twin/desired", "+/press-2/twin/desired",
		"$SYS/#", "$share/g/devices/press-2/twin/desired", "devices/press-2/messages/events", "devices/press-2", "devices/press-2/twin#"} {
		// No handler: paho would call it for every route a message matches.
		require.Equal(t, byte(0x80), suback(t, dev, f, nil), "device subscribed to %s", f)
	}
	require.Equal(t, byte(1), suback(t, dev, "devices/press-2/twin/#", own.handle))

	publishOK(t, dev, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":20}`)
	require.Eventually(t, func() bool { return gw.g.Stats().EventsIn == 1 }, 5*time.Second, 10*time.Millisecond)

	// Desired properties reach their device only.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, gw.g.SetDesired(ctx, "press-2", []byte(`{"interval":5}`)))
	require.NoError(t, gw.g.SetDesired(ctx, "press-1", []byte(`{"interval":9}`)))
	require.Eventually(t, func() bool { return len(own.got()) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"devices/press-2/twin/desired"}, own.got())

	// To another device's topic, QoS 0 and 1, and to its own desired
	// properties: dropped (MQTT 3.1.1 has no negative PUBACK), the
	// connection stays.
	dev.Publish("devices/press-1/messages/events/", 0, false, `{"deviceId":"press-1","temperature":99}`).Wait()
	dev.Publish("devices/press-2/twin/desired", 0, false, `{"interval":1}`).Wait()
	deniedPublish(t, dev, "devices/press-1/messages/events/", `{"deviceId":"press-1","temperature":99}`)
	publishOK(t, dev, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":21}`)
	require.Eventually(t, func() bool { return gw.g.Stats().EventsIn == 2 }, 5*time.Second, 10*time.Millisecond)

	time.Sleep(200 * time.Millisecond) // a wrongly delivered message would have arrived
	require.Equal(t, uint64(2), gw.g.Stats().EventsIn, "a refused publish was ingested")
	seen := spy.gotMessages()
	require.Contains(t, seen, `devices/press-2/twin/desired {"interval":5}`)
	for _, m := range seen {
		require.NotContains(t, m, "press-1/messages", "a refused publish was delivered")
		require.NotContains(t, m, `{"interval":1}`, "a device's publish to its desired properties was delivered")
	}
	st := gw.b.SecurityStats()
	require.Equal(t, uint64(3), st.ACLDeniedPublish)
	require.Equal(t, uint64(11), st.ACLDeniedSubscribe)
}

// TestBrokerAclReader: a reader subscribes to job outputs and receives
// them; it cannot read device topics or $SYS, nor publish anything.
func TestBrokerAclReader(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{PasswordFile: writePasswords(t, testUsers...)})
	url := "tcp://" + gw.b.Addr()
	reader := mustDial(t, url, "dash", login("dash", "dash-secret"))
	var got collector
	for _, f := range []string{"#", "+/#", "devices/#", "+/+/messages/events/#", "$SYS/#", "$share/g/#", "$share/g/devices/#", "$share/g"} {
		require.Equal(t, byte(0x80), suback(t, reader, f, nil), "reader subscribed to %s", f)
	}
	require.Equal(t, byte(1), suback(t, reader, "millstream/#", got.handle))
	require.Equal(t, byte(1), suback(t, reader, "$share/dashboards/millstream/j/+", got.handle))

	dev := mustDial(t, url, "press-2", login("press-2", "press-2-secret"))
	publishOK(t, dev, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":20}`)
	require.Eventually(t, func() bool { return len(got.got()) >= 1 }, 5*time.Second, 10*time.Millisecond, "job output not delivered to the reader")
	for _, topic := range got.got() {
		require.Equal(t, "millstream/j/o", topic)
	}

	n := len(got.got())
	deniedPublish(t, reader, "millstream/j/o", `{"forged":true}`)
	deniedPublish(t, reader, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":20}`)
	time.Sleep(200 * time.Millisecond)
	require.Len(t, got.got(), n, "a reader's publish was delivered")
	require.Equal(t, uint64(1), gw.g.Stats().EventsIn)
	require.Equal(t, uint64(2), gw.b.SecurityStats().ACLDeniedPublish)
	// "$share/g" is no valid filter: mochi refuses it before the ACLs.
	require.Equal(t, uint64(7), gw.b.SecurityStats().ACLDeniedSubscribe)
}

// TestBrokerAclWillAndAnonymous: a will on another device's topic is
// refused at CONNECT (mochi publishes wills without an ACL check); with
// allow_anonymous, a client without credentials is the device its client
// id names, and may not use a password-file user's id.
func TestBrokerAclWillAndAnonymous(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{PasswordFile: writePasswords(t, testUsers...), AllowAnonymous: true})
	url := "tcp://" + gw.b.Addr()
	_, err := dial(t, url, "press-2", func(o *paho.ClientOptions) {
		login("press-2", "press-2-secret")(o)
		o.SetWill("devices/press-1/messages/events/", `{"deviceId":"press-1","temperature":99}`, 1, true)
	})
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised)
	_, err = dial(t, url, "dash", nil)
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "an anonymous client took a reader's client id")
	_, err = dial(t, url, "a+b", nil)
	require.ErrorIs(t, err, pahopk.ErrorRefusedIDRejected)

	anon := mustDial(t, url, "press-9", nil)
	publishOK(t, anon, "devices/press-9/messages/events/", `{"deviceId":"press-9","temperature":20}`)
	deniedPublish(t, anon, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":20}`)
	require.Eventually(t, func() bool { return gw.g.Stats().EventsIn == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, uint64(1), gw.g.Stats().EventsIn)
}

// TestBrokerTLSDeviceCertificates: the MQTTS listener serves paho over TLS;
// a device certificate of the configured CA authenticates its device (the
// client id must be its common name); a certificate of another CA, a
// gateway's certificate, plain MQTT on the TLS port and TLS 1.1 are
// refused.
func TestBrokerTLSDeviceCertificates(t *testing.T) {
	p := newTestPKI(t)
	gw := startSecureGateway(t, BrokerOptions{TLSListen: "127.0.0.1:0", CertFile: p.cert, KeyFile: p.key, CAFile: p.caFile,
		PasswordFile: writePasswords(t, testUsers...)})
	url := "ssl://" + gw.b.TLSAddr()
	withTLS := func(conf *tls.Config) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) { o.SetTLSConfig(conf) }
	}
	press1 := p.clientTLS(t, p.ca, certs.Request{Kind: certs.Device, Name: "press-1"})

	dev := mustDial(t, url, "press-1", withTLS(press1))
	publishOK(t, dev, "devices/press-1/messages/events/", `{"deviceId":"press-1","temperature":20}`)
	require.Eventually(t, func() bool { return gw.g.Stats().EventsIn == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, byte(0x80), suback(t, dev, "devices/press-2/#", nil))

	_, err := dial(t, url, "press-2", withTLS(press1))
	require.ErrorIs(t, err, pahopk.ErrorRefusedIDRejected, "a certificate's device connected under another client id")
	_, err = dial(t, url, "press-1", func(o *paho.ClientOptions) { withTLS(press1)(o); login("press-2", "press-2-secret")(o) })
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "username and certificate name different devices")
	_, err = dial(t, url, "press-1", withTLS(p.clientTLS(t, p.other, certs.Request{Kind: certs.Device, Name: "press-1"})))
	require.Error(t, err, "a certificate of another CA was accepted")
	_, err = dial(t, url, "gw2", withTLS(p.clientTLS(t, p.ca, certs.Request{Kind: certs.Gateway, Name: "gw2"})))
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "a gateway certificate authenticated a device")
	_, err = dial(t, url, "a/b", withTLS(p.clientTLS(t, p.ca, certs.Request{Kind: certs.Device, Name: "a/b"})))
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "a certificate named a device id with '/'")
	_, err = dial(t, url, "press-3", withTLS(p.clientTLS(t, nil, certs.Request{})))
	require.ErrorIs(t, err, pahopk.ErrorRefusedNotAuthorised, "TLS without a certificate or a password was accepted")
	mustDial(t, url, "press-2", func(o *paho.ClientOptions) {
		withTLS(p.clientTLS(t, nil, certs.Request{}))(o)
		login("press-2", "press-2-secret")(o)
	})

	_, err = dial(t, "tcp://"+gw.b.TLSAddr(), "press-1", nil)
	require.Error(t, err, "plain MQTT accepted on the TLS port")
	c, err := tls.Dial("tcp", gw.b.TLSAddr(), &tls.Config{RootCAs: p.serverPool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "TLS 1.1 accepted")

	deniedPublish(t, dev, "devices/press-2/messages/events/", `{"deviceId":"press-2","temperature":20}`)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, uint64(1), gw.g.Stats().EventsIn, "refused clients changed the gateway")
	// Other CA, plain MQTT, TLS 1.1 (the server may see its failure after
	// the client).
	require.Eventually(t, func() bool { return gw.b.SecurityStats().ConnectRefused["tls"] == 3 }, 5*time.Second, 10*time.Millisecond,
		"%v", gw.b.SecurityStats().ConnectRefused)
}

// TestBrokerOversizedPacketBoundedMemory: a packet whose header claims
// 200 MB closes the connection before its body is read, before CONNECT
// and after it, without the broker allocating it.
func TestBrokerOversizedPacketBoundedMemory(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{MaxPayload: 64 << 10})
	huge := func(typ byte) []byte { return mqttwire.AppendRemaining([]byte{typ}, 200<<20) }
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, connectFirst := range []bool{false, true} {
		c, err := net.Dial("tcp", gw.b.Addr())
		require.NoError(t, err)
		r := bufio.NewReader(c)
		if connectFirst {
			_, err = c.Write(mqttwire.Connect("big", 30))
			require.NoError(t, err)
			h, body, err := mqttwire.ReadPacket(r)
			require.NoError(t, err)
			require.True(t, mqttwire.ConnackOK(append([]byte{h, byte(len(body))}, body...)))
			_, err = c.Write(append(huge(0x32), 0, 1, 'x', 0, 1)) // PUBLISH QoS 1, topic "x", id 1
		} else {
			_, err = c.Write(huge(0x10)) // CONNECT
		}
		require.NoError(t, err)
		// Some body follows, as an attacker would send.
		_, _ = c.Write(make([]byte, 1<<20))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = io.Copy(io.Discard, r)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with our bytes unread
		}
		require.NoError(t, err, "connection not closed (or not promptly) after an oversized header; connect first: %v", connectFirst)
		c.Close()
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(50<<20), "the broker allocated the oversized packet")
	require.Zero(t, gw.g.Stats().EventsIn)
}

// TestBrokerConnectionLimit: clients beyond max_connections are refused
// with "server unavailable"; sockets that never send CONNECT count too,
// are closed after the connect timeout, and beyond the socket cap at once.
func TestBrokerConnectionLimit(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{MaxConnections: 2, ConnectTimeout: 2 * time.Second})
	url := "tcp://" + gw.b.Addr()
	first := mustDial(t, url, "press-1", nil)
	mustDial(t, url, "press-2", nil)
	_, err := dial(t, url, "press-3", nil)
	require.ErrorIs(t, err, pahopk.ErrorRefusedServerUnavailable)
	require.Equal(t, uint64(1), gw.b.SecurityStats().ConnectRefused["limit"])

	// The cap on sockets is 2 + 2: two silent sockets fill it.
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	var silent []net.Conn
	require.Eventually(t, func() bool { return gw.b.SecurityStats().OpenConnections == 2 }, 5*time.Second, 10*time.Millisecond)
	for range 2 {
		c, err := net.Dial("tcp", gw.b.Addr())
		require.NoError(t, err)
		defer c.Close()
		silent = append(silent, c)
	}
	require.Eventually(t, func() bool { return gw.b.SecurityStats().OpenConnections == 4 }, 5*time.Second, 10*time.Millisecond)
	over, err := net.Dial("tcp", gw.b.Addr())
	require.NoError(t, err)
	defer over.Close()
	require.True(t, closedWithin(over, time.Second), "a socket over the cap was kept")
	require.False(t, closedWithin(silent[0], 100*time.Millisecond), "a silent socket was closed before the connect timeout")
	for _, c := range silent {
		require.True(t, closedWithin(c, 5*time.Second), "a socket that never sent CONNECT was kept past the connect timeout")
	}

	first.Disconnect(50)
	require.Eventually(t, func() bool { return gw.b.SecurityStats().OpenConnections == 1 }, 5*time.Second, 10*time.Millisecond)
	mustDial(t, url, "press-3", nil)
	require.Equal(t, uint64(2), gw.b.SecurityStats().ConnectRefused["limit"])
}

// v5Connect is an MQTT 5 CONNECT: clean start, keep-alive 30 s, session
// expiry interval (property 0x11) 7200 s, username and password.
func v5Connect(clientID, user, password string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc2, 0, 30, 5, 0x11}
	body = binary.BigEndian.AppendUint32(body, 7200)
	for _, f := range []string{clientID, user, password} {
		body = append(binary.BigEndian.AppendUint16(body, uint16(len(f))), f...)
	}
	return append(mqttwire.AppendRemaining([]byte{0x10}, len(body)), body...)
}

// v5Publish is an MQTT 5 QoS 1 PUBLISH without properties.
func v5Publish(topic string, id uint16, payload string) []byte {
	body := append(binary.BigEndian.AppendUint16(nil, uint16(len(topic))), topic...)
	body = append(binary.BigEndian.AppendUint16(body, id), 0)
	body = append(body, payload...)
	return append(mqttwire.AppendRemaining([]byte{0x32}, len(body)), body...)
}

// TestBrokerMQTT5: an MQTT 5 client asking for a 2 h session gets
// max_session_expiry in its CONNACK, a publish the ACLs refuse gets a
// PUBACK "not authorized" (0x87) and one over max_payload_bytes "quota
// exceeded" (0x97), the connection staying open.
func TestBrokerMQTT5(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{MaxSessionExpiry: time.Minute, PasswordFile: writePasswords(t, testUsers...), MaxPayload: 1000})
	c, err := net.Dial("tcp", gw.b.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	_, err = c.Write(v5Connect("press-2", "press-2", "press-2-secret"))
	require.NoError(t, err)
	h, ack, err := mqttwire.ReadPacket(r)
	require.NoError(t, err)
	require.Equal(t, byte(0x20), h)
	require.Equal(t, byte(0), ack[1], "CONNACK reason")
	props := ack[3:] // flags, reason, property length (short), properties
	i := strings.IndexByte(string(props), 0x11)
	require.GreaterOrEqual(t, i, 0, "no session expiry in the CONNACK")
	require.Equal(t, uint32(60), binary.BigEndian.Uint32(props[i+1:i+5]))

	for _, p := range []struct {
		topic   string
		id      uint16
		reason  byte
		payload string
	}{{"devices/press-1/messages/events/", 7, 0x87, ""}, {"devices/press-2/messages/events/", 8, 0, ""},
		{"devices/press-2/messages/events/", 9, 0x97, `{"pad":"` + strings.Repeat("x", 2000) + `"}`}} {
		payload := p.payload
		if payload == "" {
			payload = `{"deviceId":"x","temperature":1}`
		}
		_, err = c.Write(v5Publish(p.topic, p.id, payload))
		require.NoError(t, err)
		h, ack, err = mqttwire.ReadPacket(r)
		require.NoError(t, err)
		require.Equal(t, byte(0x40), h, "PUBACK")
		require.Equal(t, p.id, binary.BigEndian.Uint16(ack))
		reason := byte(0)
		if len(ack) > 2 {
			reason = ack[2]
		}
		require.Equal(t, p.reason, reason, "PUBACK reason for %s", p.topic)
	}
	require.Eventually(t, func() bool { return gw.g.Stats().EventsIn == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(1), gw.b.SecurityStats().ACLDeniedPublish)
}

// TestBrokerRetainedLimit: retained messages beyond max_retained are
// delivered but not kept, and counted; replacing a kept one still works.
func TestBrokerRetainedLimit(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{MaxRetained: 2})
	url := "tcp://" + gw.b.Addr()
	pub := mustDial(t, url, "status", nil)
	for _, topic := range []string{"plant/a", "plant/b", "plant/c", "plant/a"} {
		tok := pub.Publish(topic, 1, true, "up")
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
	}
	// What the broker keeps (delivering retained messages to a new
	// subscriber is mochi's business).
	requireRetained(t, gw.b, "plant/a", "plant/b")
	require.Equal(t, uint64(1), gw.b.SecurityStats().RetainedDropped)
}

// TestAclAllows: the rules themselves, with wildcards, shared
// subscriptions, look-alike ids and $ topics.
func TestAclAllows(t *testing.T) {
	for _, c := range []struct {
		role  mqttRole
		topic string
		write bool
		want  bool
	}{
		{roleDevice, "devices/press-1/messages/events/", true, true},
		{roleDevice, "devices/press-1/messages/events", true, true},
		{roleDevice, "devices/press-1//x", true, true},
		{roleDevice, "devices/press-1", true, false},
		{roleDevice, "devices/press-10/messages/events", true, false},
		{roleDevice, "devices/press-/messages/events", true, false},
		{roleDevice, "devices/press-2/messages/events", true, false},
		{roleDevice, "Devices/press-1/x", true, false},
		{roleDevice, "/devices/press-1/x", true, false},
		{roleDevice, "devices/press-1/twin/desired", true, false},
		{roleDevice, "devices/press-1/twin/desired/x", true, false},
		{roleDevice, "devices/press-1/twin/reported", true, true},
		{roleDevice, "$SYS/broker/x", true, false},
		{roleDevice, "devices/press-1/twin/desired", false, true},
		{roleDevice, "devices/press-1/twin/#", false, true},
		{roleDevice, "devices/press-1/twin", false, true},
		{roleDevice, "devices/press-1/twin#", false, false},
		{roleDevice, "devices/press-1/twins/x", false, false},
		{roleDevice, "devices/press-1/#", false, false},
		{roleDevice, "devices/press-1/messages/events", false, false},
		{roleDevice, "devices/+/twin/desired", false, false},
		{roleDevice, "devices/#", false, false},
		{roleDevice, "#", false, false},
		{roleDevice, "+/press-1/twin/desired", false, false},
		{roleDevice, "$share/g/devices/press-1/twin/desired", false, false},
		{roleReader, "millstream/j/o", false, true},
		{roleReader, "millstream/#", false, true},
		{roleReader, "alerts/+/high", false, true},
		{roleReader, "$share/g/millstream/#", false, true},
		{roleReader, "$SHARE/g/millstream/#", false, true},
		{roleReader, "millstream/j/o", true, false},
		{roleReader, "#", false, false},
		{roleReader, "+/j/o", false, false},
		{roleReader, "devices/press-1/twin/desired", false, false},
		{roleReader, "devices", false, false},
		{roleReader, "$SYS/#", false, false},
		{roleReader, "$share/g/#", false, false},
		{roleReader, "$share/g/devices/#", false, false},
		{roleReader, "$share/g", false, false},
		{roleReader, "$share/g/", false, false},
		{roleAdmin, "#", false, true},
		{roleAdmin, "devices/press-2/twin/desired", true, true},
		{roleNone, "millstream/j/o", false, false},
	} {
		require.Equal(t, c.want, aclAllows(c.role, "press-1", c.topic, c.write), "role %d, topic %q, write %v", c.role, c.topic, c.write)
	}
}

// TestBrokerPasswordLine: PasswordLine makes a line the broker reads and
// whose hash verifies; bad users, roles and passwords are refused, and so
// are bad password files.
func TestBrokerPasswordLine(t *testing.T) {
	line, err := PasswordLine("press-1", MQTTRoleDevice, "s3cret")
	require.NoError(t, err)
	f := strings.Fields(line)
	require.Len(t, f, 3)
	require.Equal(t, []string{"press-1", "device"}, f[:2])
	require.NoError(t, bcrypt.CompareHashAndPassword([]byte(f[2]), []byte("s3cret")))
	cost, err := bcrypt.Cost([]byte(f[2]))
	require.NoError(t, err)
	require.Equal(t, bcrypt.DefaultCost, cost)

	for _, bad := range [][3]string{{"a/b", "device", "x"}, {"a+b", "device", "x"}, {"a#", "reader", "x"}, {"a b", "admin", "x"}, {"", "admin", "x"},
		{"ok", "root", "x"}, {"ok", "device", ""}, {"ok", "device", strings.Repeat("x", 73)}} {
		_, err := passwordLine(bad[0], bad[1], bad[2], bcrypt.MinCost)
		require.Error(t, err, "%q", bad)
	}
	dir := t.TempDir()
	good, err := passwordLine("dash", MQTTRoleReader, "x", bcrypt.MinCost)
	require.NoError(t, err)
	for _, bad := range []string{"dash reader", "dash reader nothash", "dash root " + f[2], "a/b device " + f[2], good + "\n" + good} {
		p := filepath.Join(dir, "bad")
		require.NoError(t, os.WriteFile(p, []byte(bad+"\n"), 0o600))
		_, err := newSecurity(BrokerOptions{PasswordFile: p})
		require.Error(t, err, "%q", bad)
		require.NotContains(t, err.Error(), f[2], "an error quoted a hash")
	}
}

// TestBrokerOptionsFromConfig: the mqtt section of a gateway file reaches
// the broker, and a TLS setup that cannot work is refused at start.
func TestBrokerOptionsFromConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`mqtt_listen: 127.0.0.1:0
max_payload_bytes: 1024
mqtt:
  tls_listen: 127.0.0.1:0
  tls: {cert_file: c.pem, key_file: k.pem, ca_file: ca.pem}
  password_file: users
  allow_anonymous: true
  max_connections: 7
  max_session_expiry: 1800s
  max_retained: 9
`), 0o600))
	cfg, err := config.LoadGateway(p)
	require.NoError(t, err)
	require.Equal(t, BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1024, TLSListen: "127.0.0.1:0", CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem",
		PasswordFile: "users", AllowAnonymous: true, MaxConnections: 7, MaxSessionExpiry: 30 * time.Minute, MaxRetained: 9, MaxRetainedBytes: config.DefaultMQTTMaxRetainedBytes}, BrokerOptionsFrom(cfg))

	pki := newTestPKI(t)
	g := New(Config{Partitions: 1}, nil, nil)
	defer g.Close(context.Background())
	for _, bad := range []BrokerOptions{
		{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0"},
		{Listen: "127.0.0.1:0", CertFile: pki.cert, KeyFile: pki.key},
		{Listen: "127.0.0.1:0", CAFile: pki.caFile},
		{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", CertFile: pki.cert, KeyFile: pki.caFile},
		{Listen: "127.0.0.1:0", PasswordFile: filepath.Join(t.TempDir(), "missing")},
		{},
	} {
		b, err := StartBroker(g, bad)
		if err == nil {
			b.Close()
		}
		require.Error(t, err, "%+v", bad)
	}
}

// TestBrokerRetainedBytesLimit: retained payloads are capped in bytes too
// (1,500 retained 200 KiB messages held 789 MiB under the count cap
// alone); replacing or clearing one frees its bytes.
func TestBrokerRetainedBytesLimit(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{MaxRetainedBytes: 1000})
	url := "tcp://" + gw.b.Addr()
	pub := mustDial(t, url, "status", nil)
	publish := func(topic string, size int) {
		tok := pub.Publish(topic, 1, true, strings.Repeat("x", size))
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
	}
	publish("plant/a", 600)
	publish("plant/b", 600) // 1,200 bytes: delivered, not kept
	require.Equal(t, uint64(1), gw.b.SecurityStats().RetainedDropped)
	publish("plant/a", 300) // replaces a: 300 bytes held
	publish("plant/b", 600) // 900 bytes held
	publish("plant/c", 0)   // clearing what is not there changes nothing
	requireRetained(t, gw.b, "plant/a", "plant/b")
	publish("plant/b", 0)   // cleared: 300 bytes held
	publish("plant/d", 700) // 1,000 bytes: kept
	requireRetained(t, gw.b, "plant/a", "plant/d")
	require.Equal(t, uint64(1), gw.b.SecurityStats().RetainedDropped)
}

// requireRetained checks the broker comes to retain exactly topics
// (besides its $SYS ones): mochi may store a retained message after it
// acknowledged the publish.
func requireRetained(t *testing.T, b *Broker, topics ...string) {
	t.Helper()
	want := append([]string(nil), topics...)
	sort.Strings(want)
	var got []string
	require.Eventually(t, func() bool {
		got = got[:0]
		for topic := range b.srv.Topics.Retained.GetAll() {
			if !strings.HasPrefix(topic, "$SYS/") {
				got = append(got, topic)
			}
		}
		sort.Strings(got)
		return slices.Equal(got, want)
	}, 5*time.Second, 5*time.Millisecond, "retained %v, want %v", got, want)
}
