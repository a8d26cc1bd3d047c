package actors

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The embedded broker serves the device twin topics of Azure IoT Hub's MQTT
// support, so devices written with the IoT Hub device SDKs keep their twin
// calls (twin.go holds the twins):
//
//	$iothub/twin/GET/?$rid={rid}                        -> $iothub/twin/res/200/?$rid={rid}, the twin
//	$iothub/twin/PATCH/properties/reported/?$rid={rid}  -> $iothub/twin/res/204/?$rid={rid}&$version={v}
//	(desired set by an operator)                        -> $iothub/twin/PATCH/properties/desired/?$version={v}
//	(a direct method invoked by an operator, methods.go) -> $iothub/methods/POST/{name}/?$rid={rid}
//	$iothub/methods/res/{status}/?$rid={rid}            (the device's answer)
//
// The device is the client id (the device id, which authentication
// enforces). Answers go to that connection only, never through the topic
// tree: a subscription to $iothub/twin/res/# receives only its own. Every
// other publish under $iothub/ is refused, so nobody can pose as the hub.

const iothubPrefix = "$iothub/"

// iothub answers a publish under $iothub/ from cl.
func (h *ingestHook) iothub(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	path, query, _ := strings.Cut(strings.TrimPrefix(pk.TopicName, iothubPrefix), "?")
	params, _ := url.ParseQuery(query)
	rid := params.Get("$rid")
	id := cl.ID
	switch path {
	case "twin/GET/":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t, err := h.g.TwinOf(ctx, id)
		cancel()
		if err != nil {
			h.twinAnswer(cl, 503, rid, 0, nil)
			break
		}
		h.twinAnswer(cl, 200, rid, 0, t.JSON())
	case "twin/PATCH/properties/reported/":
		err := h.g.PatchReported(id, pk.Payload)
		switch {
		case errors.Is(err, ErrTwin):
			h.b.logger.Warn("twin reported properties patch refused", "device", id, "error", err)
			h.twinAnswer(cl, 400, rid, 0, nil)
		case err != nil:
			h.twinAnswer(cl, 503, rid, 0, nil)
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t, terr := h.g.TwinOf(ctx, id)
			cancel()
			var version uint64
			if terr == nil {
				version = t.ReportedVersion
			}
			h.twinAnswer(cl, 204, rid, version, nil)
		}
	default:
		if status, ok := methodAnswerStatus(path); ok {
			h.g.MethodAnswer(id, rid, status, pk.Payload)
			break
		}
		h.b.rejected.Add(1)
		h.b.logger.Warn("MQTT publish under $iothub/ refused: only the twin GET and reported PATCH topics and direct method answers are served", "client", id, "topic", pk.TopicName)
		if pk.FixedHeader.Qos > 0 && cl.Properties.ProtocolVersion >= 5 {
			nack(cl, pk.FixedHeader.Qos, pk.PacketID, packets.ErrTopicNameInvalid)
			return pk, packets.ErrRejectPacket
		}
	}
	return pk, packets.CodeSuccessIgnore // answered here, never routed
}

// twinAnswer writes $iothub/twin/res/{status}/?$rid=... to cl.
func (h *ingestHook) twinAnswer(cl *mqtt.Client, status int, rid string, version uint64, body []byte) {
	topic := fmt.Sprintf("$iothub/twin/res/%d/?$rid=%s", status, url.QueryEscape(rid))
	if version > 0 {
		topic += fmt.Sprintf("&$version=%d", version)
	}
	writeTo(cl, topic, body)
}

// NotifyDesired tells device id, if connected and subscribed, of its new
// desired properties as IoT Hub does (DesiredNotifier).
func (b *Broker) NotifyDesired(id string, desired []byte, version uint64) {
	cl, ok := b.srv.Clients.Get(id)
	if !ok || cl.Closed() {
		return
	}
	topic := fmt.Sprintf("$iothub/twin/PATCH/properties/desired/?$version=%d", version)
	for filter := range cl.State.Subscriptions.GetAll() {
		if matchTopic(filter, topic) {
			t := Twin{Desired: desired, DesiredVersion: version}
			writeTo(cl, topic, t.desiredJSON())
			return
		}
	}
}

// methodAnswerStatus parses "methods/res/{status}/", a device's answer to
// a direct method.
func methodAnswerStatus(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "methods/res/")
	if !ok {
		return 0, false
	}
	code, ok := strings.CutSuffix(rest, "/")
	if !ok {
		return 0, false
	}
	status, err := strconv.Atoi(code)
	if err != nil || status < 0 || status > 999 {
		return 0, false
	}
	return status, true
}

// WriteMethod writes a direct method call to device id's connection, if
// it is connected and subscribed to calls (MethodWriter). The write
// itself is on its own goroutine: a device that stops reading its socket
// must not hold up the device actor that called it.
func (b *Broker) WriteMethod(id, topic string, payload []byte) bool {
	cl, ok := b.srv.Clients.Get(id)
	if !ok || cl.Closed() {
		return false
	}
	for filter := range cl.State.Subscriptions.GetAll() {
		if matchTopic(filter, topic) {
			go func() {
				err := cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payload})
				if err != nil {
					b.logger.Debug("direct method call not written to the device", "device", id, "error", err)
				}
			}()
			return true
		}
	}
	return false
}

// writeTo sends a QoS 0 PUBLISH to one client.
func writeTo(cl *mqtt.Client, topic string, payload []byte) {
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payload})
}

// iothubACL: what a device may do under $iothub/ (its own twin; every
// answer goes to its connection only).
func iothubACL(topic string, write bool) bool {
	rest := strings.TrimPrefix(topic, iothubPrefix)
	if write {
		return strings.HasPrefix(rest, "twin/GET/") || strings.HasPrefix(rest, "twin/PATCH/properties/reported/") || strings.HasPrefix(rest, "methods/res/")
	}
	return underLevel(rest, "twin/res") || rest == "twin/res/#" || underLevel(rest, "twin/PATCH/properties/desired") || rest == "twin/#" ||
		underLevel(rest, "methods/POST") || rest == "methods/POST/#"
}
