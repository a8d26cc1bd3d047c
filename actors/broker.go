package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
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
type Broker struct {
	srv        *mqtt.Server
	addr       string
	maxPayload int
	rejected   atomic.Uint64
	unrouted   atomic.Uint64
	refused    atomic.Uint64
	// refusedConns counts connections refused while the gateway was not
	// ready; lastWarn rate-limits the log lines about refusals.
	refusedConns atomic.Uint64
	lastWarn     atomic.Int64
	logger       *slog.Logger
	// Durable gateways acknowledge QoS 1 publishes here, once logged, so a
	// client's next publishes are read while earlier ones wait for the
	// group commit (mochi would hold the client's read loop otherwise).
	acks    chan pendingPuback
	ackDone chan struct{}
}

type pendingPuback struct {
	cl      *mqtt.Client
	id      uint16
	commit  Commit
	topic   string
	payload []byte
}

// StartBroker listens on addr ("127.0.0.1:0" picks a free port).
func StartBroker(addr string, g *Gateway, maxPayload int, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	// Resolve port 0 here so callers learn the real address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("actors: MQTT listen %s: %w", addr, err)
	}
	addr = ln.Addr().String()
	ln.Close()

	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: logger.With("component", "mqtt")})
	b := &Broker{srv: srv, addr: addr, maxPayload: maxPayload, logger: logger, acks: make(chan pendingPuback, 1<<16), ackDone: make(chan struct{})}
	go b.acker()
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := srv.AddHook(&ingestHook{b: b, g: g}, nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, fmt.Errorf("actors: MQTT listener: %w", err)
	}
	go func() {
		if err := srv.Serve(); err != nil {
			logger.Error("MQTT broker stopped", "error", err)
		}
	}()
	return b, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

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
	now := time.Now().UnixNano()
	last := b.lastWarn.Load()
	if now-last < int64(5*time.Second) || !b.lastWarn.CompareAndSwap(last, now) {
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
		writeRaw(cl, []byte{packets.Puback << 4, 3, byte(id >> 8), byte(id), code.Code})
		return
	}
	cl.Stop(fmt.Errorf("publish %d refused: %w", id, err))
}

// Unrouted counts messages on topics no job input listens to.
func (b *Broker) Unrouted() uint64 { return b.unrouted.Load() }

// Close stops the broker.
func (b *Broker) Close() error {
	err := b.srv.Close()
	close(b.acks)
	<-b.ackDone
	return err
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
	if h.b.maxPayload > 0 && len(pk.Payload) > h.b.maxPayload {
		// Acknowledged (a retry could never succeed) but neither ingested
		// nor delivered: counted in Rejected, and dead-lettered.
		h.b.rejected.Add(1)
		h.g.deadLetterOversized(pk.TopicName, pk.Payload, h.b.maxPayload)
		return pk, packets.CodeSuccessIgnore
	}
	payload := append([]byte(nil), pk.Payload...)
	n, commit, err := h.g.IngestTopicAsync(pk.TopicName, payload)
	if err == nil && n > 0 && h.g.store != nil {
		if pk.FixedHeader.Qos == 1 {
			// Acknowledged by the acker once logged (D1).
			h.b.acks <- pendingPuback{cl: cl, id: pk.PacketID, commit: commit, topic: pk.TopicName, payload: payload}
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
