package actors

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Broker is the MQTT broker embedded in a gateway (mochi-mqtt): devices
// connect to it as they would to edgeHub. Every publish whose topic a job
// input listens to is ingested before the broker acknowledges it (QoS 1),
// so a busy gateway slows its publishers (A3). Messages over the payload
// limit are acknowledged, dropped and counted (Rejected): resending them
// could never succeed.
//
// A QoS 1 publish is never left unanswered (issue 11 A): MQTT 3.1.1 and 5
// clients resend an unacknowledged message only after they reconnect, so a
// publish the gateway cannot take is answered by closing the connection
// (MQTT 3.1.1) or a PUBACK with the reason (MQTT 5), and while the gateway
// recovers its state it refuses connections with "server unavailable"
// (CONNACK 3, or 0x88 in MQTT 5).
//
// Security (issue 12, broker_auth.go): an MQTTS listener, clients
// authenticated by password or device certificate, per-role ACLs, and
// limits on connections, packet size, session expiry and retained
// messages.
type Broker struct {
	srv          *mqtt.Server
	housekeeping time.Duration // how often mochi looks for expired sessions and messages
	addr         string
	tlsAddr      string
	maxPayload   int
	rejected     atomic.Uint64
	unrouted     atomic.Uint64
	refused      atomic.Uint64
	// refusedConns counts connections refused while the gateway was not
	// ready; refusalLog rate-limits the log lines about refusals.
	refusedConns atomic.Uint64
	refusalLog   logLimiter
	logger       *slog.Logger
	// Durable gateways acknowledge QoS 1 publishes here, once logged, so a
	// client's next publishes are read while earlier ones wait for the
	// group commit (mochi would hold the client's read loop otherwise).
	acks    chan pendingPuback
	ackDone chan struct{}

	sec       *security
	listeners []*brokerListener
	// openConns counts sockets of every listener, CONNECT or not;
	// maxSockets caps them (see BrokerOptions.MaxConnections).
	openConns  atomic.Int64
	maxSockets int64
	maxClients int
	connectTTL time.Duration
	// maxRetained caps retained messages; sysRetained is how many $SYS
	// topics mochi retains itself, which do not count.
	maxRetained int
	// maxRetainedBytes caps their payloads; retainedBytes is about what
	// they hold (recounted at the limit).
	maxRetainedBytes int64
	retainedBytes    atomic.Int64
	sysRetained      atomic.Int64

	aclDenied       [2]atomic.Uint64 // by aclAction
	connRefused     [numConnRefusals]atomic.Uint64
	retainedDropped atomic.Uint64
	securityLog     logLimiter
}

type pendingPuback struct {
	cl      *mqtt.Client
	id      uint16
	commit  Commit
	topic   string
	payload []byte
}

// BrokerOptions configures the embedded broker. Zero fields take the
// defaults given.
type BrokerOptions struct {
	// Listen is the plain MQTT address ("127.0.0.1:0" picks a free port;
	// empty: no plain listener).
	Listen string
	// TLSListen is the MQTTS address (TLS 1.2 or later); it needs CertFile
	// and KeyFile.
	TLSListen         string
	CertFile, KeyFile string
	// CAFile: a client certificate it signed authenticates a device (the
	// common name is the device id).
	CAFile string
	// PasswordFile: "<username> <role> <bcrypt hash>" lines (PasswordLine).
	PasswordFile string
	// AllowAnonymous accepts clients without credentials even though
	// PasswordFile or CAFile is set; they are the device their client id
	// names. Without PasswordFile and CAFile every client is accepted and
	// may do anything (the loopback demo).
	AllowAnonymous bool
	// MaxPayload is the largest payload ingested (default 256 KiB); larger
	// ones are acknowledged and dropped. A packet larger than MaxPayload
	// plus 64 KiB (topic, properties) closes the connection before its
	// body is read.
	MaxPayload int
	// MaxConnections caps connected clients (default 10,000); beyond it a
	// client is refused with "server unavailable". Sockets count from
	// their accept: at most MaxConnections + min(MaxConnections, 64) are
	// open (the rest are closed at once), and one that has not sent
	// CONNECT within ConnectTimeout is closed.
	MaxConnections int
	// MaxSessionExpiry caps how long a disconnected client's session is
	// kept (default 1h).
	MaxSessionExpiry time.Duration
	// MaxRetained caps retained messages (default 10,000); a retained
	// publish beyond it is delivered but not retained, and counted.
	MaxRetained int
	// MaxRetainedBytes caps the retained messages' payloads (default 64
	// MiB); a retained publish beyond it is delivered but not retained,
	// and counted.
	MaxRetainedBytes int64
	// ConnectTimeout bounds the TLS handshake and the CONNECT packet of a
	// new connection (default 10s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Broker limits' defaults (BrokerOptions).
const (
	DefaultMQTTMaxConnections   = config.DefaultMQTTMaxConnections
	DefaultMQTTMaxSessionExpiry = config.DefaultMQTTMaxSessionExpiry
	DefaultMQTTMaxRetained      = config.DefaultMQTTMaxRetained
	defaultMaxPayload           = config.DefaultMaxPayloadBytes
	defaultConnectTimeout       = 10 * time.Second
	// packetOverhead is what a packet may carry besides its payload
	// (topic up to 64 KiB, MQTT 5 properties) and still be read.
	packetOverhead = 64 << 10
)

// BrokerOptionsFrom maps a gateway configuration (mqtt_listen,
// max_payload_bytes and the mqtt section) to broker options.
func BrokerOptionsFrom(cfg *pb.GatewayConfig) BrokerOptions {
	m := cfg.GetMqtt()
	return BrokerOptions{
		Listen:           cfg.GetMqttListen(),
		MaxPayload:       int(cfg.GetMaxPayloadBytes()),
		TLSListen:        m.GetTlsListen(),
		CertFile:         m.GetTls().GetCertFile(),
		KeyFile:          m.GetTls().GetKeyFile(),
		CAFile:           m.GetTls().GetCaFile(),
		PasswordFile:     m.GetPasswordFile(),
		AllowAnonymous:   m.GetAllowAnonymous(),
		MaxConnections:   int(m.GetMaxConnections()),
		MaxSessionExpiry: m.GetMaxSessionExpiry().AsDuration(),
		MaxRetained:      int(m.GetMaxRetained()),
		MaxRetainedBytes: int64(m.GetMaxRetainedBytes()),
	}
}

func (o *BrokerOptions) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = defaultMaxPayload
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMQTTMaxConnections
	}
	if o.MaxSessionExpiry <= 0 {
		o.MaxSessionExpiry = DefaultMQTTMaxSessionExpiry
	}
	if o.MaxRetained <= 0 {
		o.MaxRetained = DefaultMQTTMaxRetained
	}
	if o.MaxRetainedBytes <= 0 {
		o.MaxRetainedBytes = config.DefaultMQTTMaxRetainedBytes
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
}

// StartBroker starts the embedded broker for g on the listeners of opts.
func StartBroker(g *Gateway, opts BrokerOptions) (*Broker, error) {
	opts.defaults()
	if opts.Listen == "" && opts.TLSListen == "" {
		return nil, errors.New("actors: MQTT broker: no listener address")
	}
	sec, err := newSecurity(opts)
	if err != nil {
		return nil, err
	}
	tlsConf, err := brokerTLSConfig(opts)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	caps := mqtt.NewDefaultServerCapabilities()
	// Checked on the fixed header, before mochi allocates the body.
	caps.MaximumPacketSize = uint32(opts.MaxPayload + packetOverhead)
	caps.MaximumSessionExpiryInterval = uint32(min(opts.MaxSessionExpiry/time.Second, math.MaxUint32))
	// $SYS statistics every 30 s rather than mochi's every second: an idle
	// gateway should not spend its CPU republishing them.
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: mqttLogger(logger), Capabilities: caps, SysTopicResendInterval: 30})
	housekeeping := time.Second
	if slowHousekeeping(srv, brokerHousekeepingEvery) {
		housekeeping = brokerHousekeepingEvery
	} else {
		logger.Debug("embedded broker's housekeeping left at every second (this mochi release keeps its tickers elsewhere)")
	}
	b := &Broker{srv: srv, maxPayload: opts.MaxPayload, logger: logger, acks: make(chan pendingPuback, 1<<16), ackDone: make(chan struct{}),
		sec: sec, maxRetained: opts.MaxRetained, maxRetainedBytes: opts.MaxRetainedBytes, maxClients: opts.MaxConnections, connectTTL: opts.ConnectTimeout,
		// Sockets still in their TLS handshake or CONNECT count too, so
		// clients that never send CONNECT cannot exhaust file descriptors;
		// the headroom lets a client over the limit still get its CONNACK.
		maxSockets: int64(opts.MaxConnections + min(opts.MaxConnections, 64)), housekeeping: housekeeping}
	go b.acker()
	// The security hook comes first: an unauthenticated client learns
	// nothing else, and its OnPublish sees a publish before ingestion.
	if err := srv.AddHook(&securityHook{b: b}, nil); err != nil {
		b.Close()
		return nil, err
	}
	if err := srv.AddHook(&ingestHook{b: b, g: g}, nil); err != nil {
		b.Close()
		return nil, err
	}
	for _, l := range []struct {
		id, addr string
		tls      *tls.Config
	}{{"tcp", opts.Listen, nil}, {"tls", opts.TLSListen, tlsConf}} {
		if l.addr == "" {
			continue
		}
		bl, err := b.listen(l.id, l.addr, l.tls)
		if err == nil {
			err = srv.AddListener(bl)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("actors: MQTT listener %s %s: %w", l.id, l.addr, err)
		}
		if l.tls == nil {
			b.addr = bl.Address()
		} else {
			b.tlsAddr = bl.Address()
		}
	}
	if err := srv.Serve(); err != nil {
		b.Close()
		return nil, fmt.Errorf("actors: MQTT broker: %w", err)
	}
	// Serve published mochi's $SYS topics, which it keeps retained.
	b.sysRetained.Store(int64(srv.Topics.Retained.Len()))
	return b, nil
}

// Addr is the address of the plain MQTT listener ("" without one).
func (b *Broker) Addr() string { return b.addr }

// TLSAddr is the address of the MQTTS listener ("" without one).
func (b *Broker) TLSAddr() string { return b.tlsAddr }

// Publish implements Publisher through the broker's inline client.
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	return b.srv.Publish(topic, payload, false, qos)
}

// Rejected counts messages refused for their size; Unrouted counts
// messages on topics no job listens to (delivered to subscribers only).
func (b *Broker) Rejected() uint64 { return b.rejected.Load() }

// Refused counts messages the gateway could not take (recovering, closing,
// an outbox over quota, a failed log write); they are not acknowledged.
func (b *Broker) Refused() uint64 { return b.refused.Load() }

// RefusedConnections counts connections refused because the gateway was
// recovering its state or closing.
func (b *Broker) RefusedConnections() uint64 { return b.refusedConns.Load() }

// warnRefusal logs a refusal at most once every 5 seconds, with how many
// there were in all, so a flood of resends does not flood the log.
func (b *Broker) warnRefusal(msg string, args ...any) {
	if !b.refusalLog.allow() {
		return
	}
	b.logger.Warn(msg, append(args, "refused_publishes", b.refused.Load(), "refused_connections", b.refusedConns.Load())...)
}

// refusePublish answers a QoS 1 publish the gateway could not take so the
// client resends it: MQTT 5 gets a PUBACK with the reason code, MQTT 3.1.1
// (which has no negative acknowledgement) a closed connection, after which
// it reconnects and resends every unacknowledged message.
func (b *Broker) refusePublish(cl *mqtt.Client, id uint16, qos byte, err error) {
	b.refused.Add(1)
	b.warnRefusal("MQTT publish refused; the client will resend it", "client", cl.ID, "reason", err)
	if qos == 0 {
		return // at most once: there is nothing to answer
	}
	if cl.Properties.ProtocolVersion == 5 {
		code := packets.ErrUnspecifiedError
		switch {
		case errors.Is(err, ErrOverQuota), errors.Is(err, ErrDiskFull):
			code = packets.ErrQuotaExceeded
		case errors.Is(err, ErrNotReady), errors.Is(err, ErrClosed):
			code = packets.ErrServerBusy
		}
		nack(cl, qos, id, code)
		return
	}
	cl.Stop(fmt.Errorf("publish %d refused: %w", id, err))
}

// nack answers an MQTT 5 QoS 1 or 2 publish with a reason code: a PUBACK,
// or a PUBREC (which ends a QoS 2 exchange when the code is an error).
func nack(cl *mqtt.Client, qos byte, id uint16, code packets.Code) {
	typ := byte(packets.Puback)
	if qos == 2 {
		typ = packets.Pubrec
	}
	writeRaw(cl, []byte{typ << 4, 3, byte(id >> 8), byte(id), code.Code})
}

// Unrouted counts messages on topics no job input listens to.
func (b *Broker) Unrouted() uint64 { return b.unrouted.Load() }

// Close stops the broker: its listeners, every connection (those still
// in a handshake too) and the acknowledgements.
func (b *Broker) Close() error {
	err := b.srv.Close()
	// Listeners not yet added to mochi (a failed start) are closed here.
	for _, l := range b.listeners {
		l.Close(func(string) {})
	}
	close(b.acks)
	<-b.ackDone
	return err
}

// logLimiter lets a log line through at most once every 5 seconds, so a
// flood of refusals does not flood the log.
type logLimiter struct{ last atomic.Int64 }

func (l *logLimiter) allow() bool {
	now := time.Now().UnixNano()
	last := l.last.Load()
	return now-last >= int64(5*time.Second) && l.last.CompareAndSwap(last, now)
}

// acker sends the PUBACKs of durable QoS 1 publishes once their commit is
// done (commits complete in order), then hands each message to the
// broker's subscribers, if it has any. It takes every acknowledgement that
// is due at once and writes a client's PUBACKs in one write (one syscall
// per client per group commit instead of one per message). A publish
// whose log write failed is not acknowledged: the client sends it again.
func (b *Broker) acker() {
	defer close(b.ackDone)
	var batch []pendingPuback
	bufs := map[*mqtt.Client][]byte{}
	var clients []*mqtt.Client
	for a := range b.acks {
		batch = append(batch[:0], a)
	more:
		for len(batch) < 8192 {
			select {
			case x, ok := <-b.acks:
				if !ok {
					break more
				}
				batch = append(batch, x)
			default:
				break more
			}
		}
		clients = clients[:0]
		for _, a := range batch {
			if err := a.commit.Wait(); err != nil {
				b.refusePublish(a.cl, a.id, 1, err)
				continue
			}
			if _, ok := bufs[a.cl]; !ok {
				clients = append(clients, a.cl)
			}
			// PUBACK: type 4, remaining length 2, packet id (MQTT 5 reads
			// the missing reason code as success).
			bufs[a.cl] = append(bufs[a.cl], packets.Puback<<4, 2, byte(a.id>>8), byte(a.id))
		}
		for _, cl := range clients {
			writeRaw(cl, bufs[cl])
			delete(bufs, cl)
		}
		for _, a := range batch {
			if subs := b.srv.Topics.Subscribers(a.topic); len(subs.Subscriptions)+len(subs.Shared)+len(subs.InlineSubscriptions) > 0 {
				_ = b.srv.Publish(a.topic, a.payload, false, 1)
			}
		}
	}
}

// writeRaw writes encoded packets to a client under the client's lock,
// which mochi's own writes take too, so packets never interleave.
func writeRaw(cl *mqtt.Client, data []byte) {
	if cl.Closed() || cl.Net.Conn == nil {
		return
	}
	cl.Lock()
	defer cl.Unlock()
	_, _ = cl.Net.Conn.Write(data)
}

type ingestHook struct {
	mqtt.HookBase
	b *Broker
	g *Gateway
}

func (h *ingestHook) ID() string { return "millstream-ingest" }

func (h *ingestHook) Provides(bt byte) bool { return bt == mqtt.OnPublish || bt == mqtt.OnConnect }

// OnConnect refuses clients while the gateway cannot take their messages
// (recovering, closing): accepted, their publishes could only be refused.
// MQTT clients retry a refused connection on their own.
func (h *ingestHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if h.g.ready.Load() && !h.g.closed.Load() {
		return nil
	}
	h.b.refusedConns.Add(1)
	h.b.warnRefusal("MQTT connection refused: the gateway is recovering its state or closing", "client", cl.ID)
	_ = h.b.srv.SendConnack(cl, packets.ErrServerUnavailable, false, nil)
	return packets.ErrServerUnavailable
}

func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own outputs
	}
	if strings.HasPrefix(pk.TopicName, iothubPrefix) {
		return h.iothub(cl, pk)
	}
	if h.b.maxPayload > 0 && len(pk.Payload) > h.b.maxPayload {
		// Acknowledged (a retry could never succeed) but neither ingested
		// nor delivered: counted in Rejected, and dead-lettered.
		h.b.rejected.Add(1)
		h.g.deadLetterOversized(pk.TopicName, pk.Payload, h.b.maxPayload)
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			// MQTT 5 can say so: "quota exceeded" (0x97; PUBACK has no
			// "packet too large", which is a DISCONNECT code). MQTT 3.1.1
			// cannot, and gets a plain PUBACK: a resend could never
			// succeed. Dead-lettered either way.
			nack(cl, pk.FixedHeader.Qos, pk.PacketID, packets.ErrQuotaExceeded)
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.CodeSuccessIgnore
	}
	payload := append([]byte(nil), pk.Payload...)
	// mochi's topic string points into the packet's buffer (an unsafe
	// conversion): a device id cut from it would keep the whole packet,
	// payload and all, alive as long as the device is known (4,000
	// devices that sent 200 KiB each held 640 MiB of packets that way).
	topic := strings.Clone(pk.TopicName)
	n, commit, err := h.g.IngestTopicProps(topic, payload, userProperties(pk.Properties.User))
	if err == nil && n > 0 && h.g.store != nil {
		if pk.FixedHeader.Qos == 1 {
			// Acknowledged by the acker once logged (D1).
			h.b.acks <- pendingPuback{cl: cl, id: pk.PacketID, commit: commit, topic: topic, payload: payload}
			return pk, packets.ErrRejectPacket
		}
		// QoS 0 is at most once: the event is queued for the log, and not
		// waited for.
		return pk, nil
	}
	if err == nil {
		err = commit.Wait()
	}
	if err != nil {
		// Not acknowledged: the publisher keeps the message and sends it
		// again.
		h.b.refusePublish(cl, pk.PacketID, pk.FixedHeader.Qos, err)
		return pk, packets.ErrRejectPacket
	}
	if n == 0 {
		h.b.unrouted.Add(1)
	}
	return pk, nil
}

// userProperties are a publish's MQTT 5 user properties, for the jobs
// that read event metadata (nil for none: the common case costs nothing).
func userProperties(ps []packets.UserProperty) []exec.UserProperty {
	if len(ps) == 0 {
		return nil
	}
	out := make([]exec.UserProperty, len(ps))
	for i, p := range ps {
		out[i] = exec.UserProperty{Key: strings.Clone(p.Key), Value: strings.Clone(p.Val)} // they alias the packet
	}
	return out
}
