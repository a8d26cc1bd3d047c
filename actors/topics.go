package actors

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/exec"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// DefaultTopic is where IoT Hub-style devices publish telemetry.
const DefaultTopic = "devices/+/messages/events/#"

func topicFilter(in *pb.JobInput) string {
	if in.Topic == "" {
		return DefaultTopic
	}
	return in.Topic
}

// matchTopic matches an MQTT topic against a filter with + and # wildcards.
func matchTopic(filter, topic string) bool {
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, level := range f {
		switch {
		case level == "#":
			return true
		case i >= len(t):
			return false
		case level != "+" && level != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}

// deviceID extracts a device id as "topic:N" or "field:NAME" says
// (default topic:1, the IoT Hub shape devices/{id}/messages/events/).
func deviceID(from, topic string, payload []byte) string {
	if field, ok := strings.CutPrefix(from, "field:"); ok {
		d := value.Decoder{Fields: []string{field}}
		if rec, err := d.Decode(payload); err == nil {
			if v, ok := rec.Get(field); ok && !v.IsNull() {
				if v.Kind() == value.String {
					return v.Str()
				}
				return v.String()
			}
		}
		return "" // bad payloads still reach a partition and are dead-lettered there
	}
	n := 1
	if s, ok := strings.CutPrefix(from, "topic:"); ok {
		if k, err := strconv.Atoi(s); err == nil && k >= 0 {
			n = k
		}
	}
	levels := strings.Split(topic, "/")
	if n < len(levels) {
		return levels[n]
	}
	return topic
}

// eventMetadata reads an MQTT message's metadata: the IoT Hub property
// bag after devices/{id}/messages/events/ (URL-encoded key=value pairs
// joined by &: $.mid is the message id, $.cid the correlation id, other
// $. keys are system properties left out, the rest application
// properties), then the MQTT 5 user properties.
func eventMetadata(topic string, props []exec.UserProperty) *pb.EventMetadata {
	m := &pb.EventMetadata{}
	if _, bag, ok := strings.Cut(topic, "/messages/events/"); ok && bag != "" {
		for _, kv := range strings.Split(bag, "&") {
			k, v, _ := strings.Cut(kv, "=")
			k, kerr := url.QueryUnescape(k)
			v, verr := url.QueryUnescape(v)
			if kerr != nil || verr != nil || k == "" {
				continue
			}
			switch {
			case k == "$.mid":
				m.MessageId = v
			case k == "$.cid":
				m.CorrelationId = v
			case strings.HasPrefix(k, "$."):
			default:
				m.UserProperties = append(m.UserProperties, &pb.UserProperty{Key: k, Value: v})
			}
		}
	}
	for _, p := range props {
		m.UserProperties = append(m.UserProperties, &pb.UserProperty{Key: p.Key, Value: p.Value})
	}
	return m
}
