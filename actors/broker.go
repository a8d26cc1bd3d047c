package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

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
type Broker struct {
	srv        *mqtt.Server
	addr       string
	maxPayload int
	rejected   atomic.Uint64
	unrouted   atomic.Uint64
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
	b := &Broker{srv: srv, addr: addr, maxPayload: maxPayload}
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

// Unrouted counts messages on topics no job input listens to.
func (b *Broker) Unrouted() uint64 { return b.unrouted.Load() }

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

type ingestHook struct {
	mqtt.HookBase
	b *Broker
	g *Gateway
}

func (h *ingestHook) ID() string { return "millstream-ingest" }

func (h *ingestHook) Provides(bt byte) bool { return bt == mqtt.OnPublish }

func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own outputs
	}
	if h.b.maxPayload > 0 && len(pk.Payload) > h.b.maxPayload {
		// Acknowledged (a retry could never succeed) but neither ingested
		// nor delivered: counted in Rejected.
		h.b.rejected.Add(1)
		return pk, packets.CodeSuccessIgnore
	}
	payload := append([]byte(nil), pk.Payload...)
	n, err := h.g.IngestTopic(pk.TopicName, payload)
	if errors.Is(err, ErrClosed) {
		return pk, packets.ErrRejectPacket
	}
	if n == 0 {
		h.b.unrouted.Add(1)
	}
	return pk, nil
}
