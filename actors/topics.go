package actors

import (
	"strconv"
	"strings"

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
