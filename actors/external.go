package actors

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/millstream/millstream/internal/certs"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// External is a connection to an external MQTT broker (mosquitto, ...)
// through paho.mqtt.golang. As a source it subscribes to the configured
// topics (again after every reconnect) and ingests what arrives. A QoS 1
// message is acknowledged only once the gateway has it (logged, in durable
// mode), in the order received; a busy gateway slows the broker's delivery
// (A3), and a message the gateway refuses is not acknowledged, so the
// broker sends it again. As a Publisher it carries MQTT outputs upstream.
// It reconnects with exponential backoff (1 s to 60 s).
//
// As a source with a client id it keeps a persistent session (clean session
// off): a message the broker delivered but the gateway had not acknowledged
// when it crashed, or refused, is delivered again when it reconnects (MQTT
// resends only then, so after a refusal it reconnects on purpose). Such a
// redelivery may repeat a message the gateway had logged: sequence_field
// drops those.
type External struct {
	c        paho.Client
	url      string
	id       string // client id
	received atomic.Uint64
	unrouted atomic.Uint64
	refused  atomic.Uint64
	// oversized: messages over the gateway's max_payload_bytes,
	// acknowledged and dead-lettered.
	oversized atomic.Uint64
	acks      chan pendingAck
	ackDone   chan struct{}
	// kicking: a reconnect to get refused messages again is under way;
	// mu and closed keep it from reconnecting a closed client.
	kicking atomic.Bool
	mu      sync.Mutex
	closed  bool
	// down: this connection counts in its broker's outage (outages).
	down bool
	// source: the connection reads input (a gateway to ingest into);
	// subscribed: the broker confirmed its subscriptions on the current
	// connection. Until then the gateway is not ready: a device whose
	// message reaches the broker before the first subscription of the
	// gateway's session exists is acknowledged by the broker and dropped
	// (the nemesis lost a device's first reading that way).
	source     bool
	subscribed atomic.Bool
}

// outages are the external brokers the gateway has lost, by URL. A
// gateway may hold several connections to one broker (the upstream output
// and a source); losing the broker is one warning, whichever connection
// notices first, and having it back one info line, once every connection
// is back.
var outages = struct {
	mu    sync.Mutex
	byURL map[string]*outage
}{byURL: map[string]*outage{}}

type outage struct {
	since   time.Time
	conns   int  // connections down
	atStart bool // not reachable when the gateway started
}

// lost counts e down (once) in its broker's outage; the first connection
// down logs msg at warning, the others at debug. e.mu is held.
func (e *External) lost(logger *slog.Logger, atStart bool, msg string, args ...any) {
	if e.down || e.closed {
		return
	}
	e.down = true
	outages.mu.Lock()
	defer outages.mu.Unlock()
	o := outages.byURL[e.url]
	args = append([]any{"broker", e.url}, args...)
	if o != nil {
		o.conns++
		logger.Debug(msg, append(args, "client_id", e.id)...)
		return
	}
	outages.byURL[e.url] = &outage{since: time.Now(), conns: 1, atStart: atStart}
	logger.Warn(msg, args...)
}

// back ends e's part of its broker's outage; the last connection back
// logs it with the downtime. quiet (on close) logs nothing. e.mu is held.
func (e *External) back(logger *slog.Logger, quiet bool) {
	if !e.down {
		return
	}
	e.down = false
	outages.mu.Lock()
	defer outages.mu.Unlock()
	o := outages.byURL[e.url]
	if o == nil {
		return
	}
	if o.conns--; o.conns > 0 {
		if !quiet {
			logger.Debug("external MQTT connection back; others to the broker are still down", "broker", e.url, "client_id", e.id)
		}
		return
	}
	delete(outages.byURL, e.url)
	if quiet {
		return
	}
	msg := "reconnected to external MQTT broker"
	if o.atStart {
		msg = "connected to external MQTT broker (it was not reachable at start)"
	}
	logger.Info(msg, "broker", e.url, "downtime", time.Since(o.since).Round(time.Millisecond))
}

// ConnectExternal connects to cfg.Url. With g non-nil it subscribes to
// cfg.Topics (or topics()) and ingests into g.
func ConnectExternal(cfg *pb.ExternalBroker, g *Gateway, topics func() []string, logger *slog.Logger) (*External, error) {
	if logger == nil {
		logger = slog.Default()
	}
	e := &External{url: cfg.Url, acks: make(chan pendingAck, 4096), ackDone: make(chan struct{}), source: g != nil}
	persistent := g != nil && cfg.ClientId != ""
	opts := paho.NewClientOptions().AddBroker(cfg.Url).SetCleanSession(!persistent).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(60 * time.Second).SetOrderMatters(true).SetKeepAlive(30 * time.Second).
		SetAutoAckDisabled(true)
	id := cfg.ClientId
	if id == "" {
		id = fmt.Sprintf("millstream-%d", time.Now().UnixNano())
	}
	opts.SetClientID(id)
	e.id = id
	password, err := brokerPassword(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(password)
	} else if password != "" {
		return nil, fmt.Errorf("actors: broker %s: a password needs a username", cfg.Url)
	}
	if t := cfg.Tls; t != nil {
		tc, err := tlsConfig(t)
		if err != nil {
			return nil, err
		}
		if err := probeTLS(cfg.Url, tc); err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	qos := byte(1)
	if cfg.Qos != nil {
		qos = byte(*cfg.Qos)
	}
	if qos > 1 {
		return nil, fmt.Errorf("actors: broker %s: qos must be 0 or 1", cfg.Url)
	}
	if g != nil {
		// The default handler, not a route added by Subscribe: a
		// resumed session's broker sends what it queued, and resends
		// what was in flight, right after CONNACK, before the connect
		// handler (a goroutine of its own) has subscribed again. paho
		// neither delivers nor acknowledges a message no handler
		// takes, and the broker would keep it in its in-flight window
		// until the next reconnect: acknowledged to its device, never
		// counted (the nemesis lost readings that way). The same goes
		// for a message of a topic the session subscribed to under an
		// earlier configuration: taken, counted as unrouted and
		// acknowledged.
		opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { e.ingest(g, cfg.Url, m, logger) })
	}
	opts.SetOnConnectHandler(func(c paho.Client) {
		e.mu.Lock()
		e.back(logger, false)
		e.mu.Unlock()
		if g != nil {
			if hook := testHookBeforeSubscribe.Load(); hook != nil {
				(*hook)()
			}
			e.subscribe(c, cfg, g, topics, qos, logger)
		}
	})
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		e.subscribed.Store(false)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lost(logger, false, "external MQTT broker connection lost; reconnecting", "error", err)
		if e.c.IsConnectionOpen() {
			// paho reconnected before this handler ran (both run on
			// goroutines of their own), so the connect handler found
			// nothing down.
			e.back(logger, false)
		}
	})
	e.c = paho.NewClient(opts)
	go e.acker(logger)
	tok := e.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		e.mu.Lock()
		// Unless it connected meanwhile (the handler waits for e.mu).
		if !e.c.IsConnectionOpen() {
			e.lost(logger, true, "external MQTT broker not reachable yet; retrying in the background")
		}
		e.mu.Unlock()
	} else if err := tok.Error(); err != nil {
		close(e.acks)
		<-e.ackDone
		return nil, fmt.Errorf("actors: connect %s: %w", cfg.Url, err)
	}
	return e, nil
}

// subscribe subscribes a source to its topics (on every connect: a clean
// session forgets them) and ingests what arrives into g.
func (e *External) subscribe(c paho.Client, cfg *pb.ExternalBroker, g *Gateway, topics func() []string, qos byte, logger *slog.Logger) {
	filters := map[string]byte{}
	list := cfg.Topics
	if len(list) == 0 && topics != nil {
		list = topics()
	}
	for _, t := range list {
		if g := cfg.SharedGroup; g != "" && g != "-" {
			// The broker delivers each message to one member of
			// the group, with its own topic.
			t = "$share/" + g + "/" + t
		}
		filters[t] = qos
	}
	if len(filters) == 0 {
		e.subscribed.Store(true) // nothing to read yet
		return
	}
	// nil: what arrives goes to the default handler, set before the
	// connection exists (ingest).
	tok := c.SubscribeMultiple(filters, nil)
	var err error
	if !tok.WaitTimeout(10 * time.Second) {
		err = errors.New("no answer within 10 s")
	} else {
		err = tok.Error()
	}
	if err == nil {
		e.subscribed.Store(true)
		return
	}
	// Tried again while the connection lasts (a new connection
	// subscribes anyway); the gateway is not ready meanwhile.
	logger.Error("subscribe on external broker failed; trying again in a second", "broker", cfg.Url, "error", err)
	time.AfterFunc(time.Second, func() {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if !closed && c.IsConnectionOpen() && !e.subscribed.Load() {
			e.subscribe(c, cfg, g, topics, qos, logger)
		}
	})
}

// testHookBeforeSubscribe, set by tests, delays the subscription after a
// connect, as a busy machine's scheduler may.
var testHookBeforeSubscribe atomic.Pointer[func()]

// ingest takes one message from the broker; it is acknowledged in turn by
// acker once the gateway has it, or not at all if the gateway refuses it.
func (e *External) ingest(g *Gateway, url string, m paho.Message, logger *slog.Logger) {
	e.received.Add(1)
	if g.Oversized(m.Topic(), m.Payload()) {
		// Acknowledged in turn: a resend could never succeed.
		e.oversized.Add(1)
		e.acks <- pendingAck{msg: m}
		return
	}
	payload := append([]byte(nil), m.Payload()...)
	n, commit, err := g.IngestTopicAsync(m.Topic(), payload)
	if err != nil {
		// Not acknowledged: the broker sends it again after a
		// reconnect.
		e.refused.Add(1)
		if !errors.Is(err, ErrClosed) {
			logger.Error("ingest from external broker", "broker", url, "error", err)
			e.redeliver(logger)
		}
		return
	}
	if n == 0 {
		e.unrouted.Add(1)
	}
	// Acknowledged once logged (D1), in order, by acker.
	e.acks <- pendingAck{commit: commit, msg: m}
}

// Publish implements Publisher. While the connection is down it fails at
// once (paho would queue a QoS 1 message, and report a QoS 0 one sent
// while it drops it), so an outbox keeps the row. With QoS 1 it waits for
// the broker's acknowledgement (at most 30 s) and gives up early when the
// connection drops meanwhile: the caller retries, and the row's _id lets
// receivers drop the copy paho may still resend.
func (e *External) Publish(topic string, payload []byte, qos byte) error {
	if !e.c.IsConnectionOpen() {
		return fmt.Errorf("actors: publish %s: not connected to %s", topic, e.url)
	}
	tok := e.c.Publish(topic, qos, false, payload)
	if qos == 0 {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !tok.WaitTimeout(100 * time.Millisecond) {
		if !e.c.IsConnectionOpen() {
			return fmt.Errorf("actors: publish %s: connection lost", topic)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("actors: publish %s: timed out", topic)
		}
	}
	return tok.Error()
}

// Connected reports whether the connection to the broker is up.
func (e *External) Connected() bool { return e.c.IsConnectionOpen() }

// Subscribed reports whether the broker confirmed an input connection's
// subscriptions on the current connection (true for an output's).
func (e *External) Subscribed() bool { return !e.source || e.subscribed.Load() }

// URL is the broker's address.
func (e *External) URL() string { return e.url }

// Received counts messages taken from the broker.
func (e *External) Received() uint64 { return e.received.Load() }

// redeliver makes the broker send the refused messages again: it resends
// an unacknowledged message only on a new connection of the same session,
// so the connection is closed and made again, a second later (at most one
// such reconnect at a time).
func (e *External) redeliver(logger *slog.Logger) {
	if !e.kicking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.kicking.Store(false)
		time.Sleep(time.Second)
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed {
			return
		}
		logger.Warn("reconnecting to the external broker so it delivers the refused messages again", "broker", e.url)
		e.c.Disconnect(0)
		e.c.Connect() // retried in the background (ConnectRetry)
	}()
}

// Close disconnects.
func (e *External) Close() {
	e.mu.Lock()
	e.back(nil, true)
	e.closed = true
	e.mu.Unlock()
	e.c.Disconnect(500)
	close(e.acks)
	<-e.ackDone
}

type pendingAck struct {
	commit Commit
	msg    paho.Message
}

// acker acknowledges messages once they are durable, in arrival order.
func (e *External) acker(logger *slog.Logger) {
	defer close(e.ackDone)
	for a := range e.acks {
		if err := a.commit.Wait(); err != nil {
			e.refused.Add(1)
			logger.Error("ingest log write failed; message not acknowledged", "error", err)
			e.redeliver(logger)
			continue
		}
		a.msg.Ack()
	}
}

func tlsConfig(t *pb.TLS) (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // the user's explicit choice
	if t.CaFile != "" {
		pool, err := certs.LoadPool(t.CaFile)
		if err != nil {
			return nil, fmt.Errorf("actors: tls ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("actors: tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Topics lists the topic filters of the deployed jobs' inputs.
func (g *Gateway) Topics() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, d := range g.jobs {
		for _, in := range d.job.Inputs {
			if in.ReferenceFile != "" {
				continue
			}
			if t := topicFilter(in); !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// probeTLS makes one TLS handshake with the broker so that a certificate
// problem is a configuration error now, not an endless background retry.
// A broker that cannot be reached at all is left to the retries.
func probeTLS(rawURL string, tc *tls.Config) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("actors: broker URL %q: %w", rawURL, err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", u.Host, tc)
	if err == nil {
		return conn.Close()
	}
	var certErr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &hostErr) {
		return fmt.Errorf("actors: TLS with %s: %w", u.Host, err)
	}
	return nil
}

// brokerPassword is the password of an external broker: inline, or read
// from password_file or password_env when the gateway starts. At most
// one may be set. The value is never logged.
func brokerPassword(cfg *pb.ExternalBroker) (string, error) {
	set := 0
	for _, v := range []string{cfg.Password, cfg.PasswordFile, cfg.PasswordEnv} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return "", fmt.Errorf("actors: broker %s: give one of password, password_file and password_env", cfg.Url)
	}
	switch {
	case cfg.PasswordFile != "":
		p, err := readSecretFile(cfg.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("actors: broker %s: password_file: %w", cfg.Url, err)
		}
		return p, nil
	case cfg.PasswordEnv != "":
		p, ok := os.LookupEnv(cfg.PasswordEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("actors: broker %s: password_env: the environment variable %s is not set", cfg.Url, cfg.PasswordEnv)
		}
		return p, nil
	}
	return cfg.Password, nil
}
