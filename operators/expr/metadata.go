package expr

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/millstream/millstream/operators/value"
)

// Meta is what an input event carries besides its payload, as an IoT Hub
// input gives it to Stream Analytics: GetMetadataPropertyValue reads it,
// and an input with IoT Hub properties adds it to the event as fields
// (AddIoTHubFields). Everything in it comes from the ingest log (the
// topic's device id and property bag, MQTT 5 user properties, the
// arrival time), so a replay sees the same values.
type Meta struct {
	// Device is the device id (IoTHub.ConnectionDeviceId).
	Device string
	// MessageID and CorrelationID: the topic's $.mid and $.cid.
	MessageID, CorrelationID string
	// User are the application properties, in the order they came.
	User []UserProperty
	// Enqueued is the arrival time in ticks (EventEnqueuedUtcTime,
	// IoTHub.EnqueuedTime); 0: unknown (NULL).
	Enqueued int64
	// Payload, if set, makes EventId unique per payload as well.
	Payload []byte
}

// UserProperty is one application property of an event.
type UserProperty struct{ Key, Value string }

// Metadata property names (GetMetadataPropertyValue), lower case.
const (
	metaEnqueued  = "eventenqueuedutctime"
	metaProcessed = "eventprocessedutctime"
	metaEventID   = "eventid"
	metaIoTHub    = "iothub"
	metaUser      = "user"
)

// iotHubProps are the IoT Hub record's fields, in the order
// GetMetadataPropertyValue(i, 'IoTHub') and iothub_properties give them.
var iotHubProps = []string{"MessageId", "CorrelationId", "ConnectionDeviceId", "ConnectionDeviceGenerationId", "EnqueuedTime", "StreamId"}

// ParseMetadataPath splits a GetMetadataPropertyValue property name:
// '[User].[prop]', 'IoTHub.ConnectionDeviceId', 'EventEnqueuedUtcTime'.
// A bracketed part may hold dots. ok is false for a name it cannot read
// or one Millstream does not know (adapter names other than IoTHub and
// EventHub, and parts past the second).
func ParseMetadataPath(s string) (parts []string, ok bool) {
	for s != "" {
		var part string
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, false
			}
			part, s = s[1:end], s[end+1:]
		} else if i := strings.IndexByte(s, '.'); i >= 0 {
			part, s = s[:i], s[i:]
		} else {
			part, s = s, ""
		}
		if part == "" {
			return nil, false
		}
		parts = append(parts, part)
		if s != "" {
			if s[0] != '.' || len(s) == 1 {
				return nil, false
			}
			s = s[1:]
		}
	}
	if len(parts) == 0 || len(parts) > 2 {
		return nil, false
	}
	switch strings.ToLower(parts[0]) {
	case metaUser, metaIoTHub:
		return parts, true
	case "eventhub":
		// An Event Hubs input's names for the same properties.
		if len(parts) == 2 && isTopLevelMeta(parts[1]) {
			return parts[1:], true
		}
		return parts, len(parts) == 1
	}
	return parts, len(parts) == 1 && isTopLevelMeta(parts[0])
}

func isTopLevelMeta(name string) bool {
	switch strings.ToLower(name) {
	case metaEnqueued, metaProcessed, metaEventID:
		return true
	}
	return false
}

// Property returns the metadata property a parsed path names (NULL when
// the event does not have it).
func (m *Meta) Property(parts []string) value.Value {
	if m == nil || len(parts) == 0 {
		return value.Value{}
	}
	switch strings.ToLower(parts[0]) {
	case metaEnqueued, metaProcessed:
		return m.enqueued()
	case metaEventID:
		return value.Str(m.EventID())
	case "eventhub":
		return value.RecordValue(&value.Record{
			Names: []string{"EventEnqueuedUtcTime", "EventProcessedUtcTime", "IoTConnectionDeviceId", "IoTEnqueueTime"},
			Vals:  []value.Value{m.enqueued(), m.enqueued(), m.device(), m.enqueued()},
		})
	case metaIoTHub:
		if len(parts) == 1 {
			return value.RecordValue(m.IoTHubRecord())
		}
		v, _ := m.IoTHubRecord().Get(parts[1])
		return v
	case metaUser:
		if len(parts) == 1 {
			r := &value.Record{}
			for _, p := range m.User {
				r.Set(p.Key, value.Str(p.Value))
			}
			return value.RecordValue(r)
		}
		// The last of a repeated key wins, as a record built from them.
		for i := len(m.User) - 1; i >= 0; i-- {
			if strings.EqualFold(m.User[i].Key, parts[1]) {
				return value.Str(m.User[i].Value)
			}
		}
	}
	return value.Value{}
}

// IoTHubRecord is the IoTHub record of an IoT Hub input's event. At the
// edge there is no device generation id nor stream id: those are NULL.
func (m *Meta) IoTHubRecord() *value.Record {
	return &value.Record{Names: iotHubProps, Vals: []value.Value{
		optStr(m.MessageID), optStr(m.CorrelationID), m.device(), {}, m.enqueued(), {},
	}}
}

// AddIoTHubFields adds EventProcessedUtcTime, EventEnqueuedUtcTime and
// the IoTHub record to rec, as an IoT Hub input gives them, leaving a
// field the payload already has as it is.
func (m *Meta) AddIoTHubFields(rec *value.Record) {
	if rec.Index("EventProcessedUtcTime") < 0 {
		rec.Set("EventProcessedUtcTime", m.enqueued())
	}
	if rec.Index("EventEnqueuedUtcTime") < 0 {
		rec.Set("EventEnqueuedUtcTime", m.enqueued())
	}
	if rec.Index("IoTHub") < 0 {
		rec.Set("IoTHub", value.RecordValue(m.IoTHubRecord()))
	}
}

// EventID is a GUID-shaped id of the event, the same on every replay: a
// hash of the device, message id, arrival time and payload (Stream
// Analytics' EventId is likewise consistent when events are re-read).
func (m *Meta) EventID() string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(m.Enqueued))
	h.Write(b[:])
	for _, s := range []string{m.Device, m.MessageID} {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	h.Write(m.Payload)
	sum := h.Sum(nil)
	sum[6] = sum[6]&0x0f | 0x50 // version 5-like: name based
	sum[8] = sum[8]&0x3f | 0x80
	x := hex.EncodeToString(sum[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

func (m *Meta) enqueued() value.Value {
	if m.Enqueued == 0 {
		return value.Value{}
	}
	return value.Time(m.Enqueued)
}

func (m *Meta) device() value.Value { return optStr(m.Device) }

func optStr(s string) value.Value {
	if s == "" {
		return value.Value{}
	}
	return value.Str(s)
}

// fnGetMetadata is getmetadatapropertyvalue(part, ...): the planner
// checks the input and splits the property name (ParseMetadataPath).
func fnGetMetadata(c *Ctx, args []value.Value) value.Value {
	if c.Meta == nil {
		return value.Value{}
	}
	var parts [2]string
	n := 0
	for _, a := range args {
		if n < len(parts) && a.Kind() == value.String {
			parts[n] = a.Str()
			n++
		}
	}
	return c.Meta.Property(parts[:n])
}
