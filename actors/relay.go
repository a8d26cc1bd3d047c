package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Cluster-wide outputs. In a cluster each gateway delivers the rows of
// the partitions it serves, so an MQTT output published on the embedded
// broker reaches that broker's subscribers only. The relay closes the
// gap: an MQTT output hands every row it published to the RelayLink
// (package cluster), which sends it to the other gateways; each publishes
// it on its own broker through PublishRelayed, never through a sink, so
// a relayed row is never relayed again.
//
//	R1: a row is relayed only after this gateway published it, and never
//	    blocks or fails the delivery: the link queues it per peer within
//	    a byte bound, or drops and counts it.
//	R2: a relayed row is published only for an output a job deployed here
//	    declares as MQTT, on a topic its template can give, with the QoS
//	    this gateway's job says (PublishRelayed): a peer cannot publish on
//	    a topic no job's output could.

// ErrRelayRefused: rows relayed by another gateway that this one does not
// publish (no such MQTT output deployed here, or a topic or payload its
// output could not produce).
var ErrRelayRefused = errors.New("actors: relayed output rows refused")

// RelayLink carries the rows an MQTT output published on this gateway's
// embedded broker to the other gateways of its cluster (cluster.Node
// implements it). RelayRows is called from an output's drainer after the
// rows were published; it must not block, and must not keep rows' entries
// beyond reading their Topic and Payload (which it may keep: they are
// never changed).
type RelayLink interface {
	RelayRows(job, output string, rows []*pb.OutboxEntry)
}

// relayLink holds o's RelayLink (nil: none) for the sinks, which read it
// on every delivery.
type relayLink struct{ l RelayLink }

// SetRelay makes the MQTT outputs hand what they publish to l from now on
// (nil: no relay). Set it only when MQTT outputs publish
// on this gateway's embedded broker: with an upstream broker every
// subscriber sees every row already.
func (o *Outputs) SetRelay(l RelayLink) {
	o.relay.Store(&relayLink{l: l})
}

// PublishRelayed publishes rows another gateway's MQTT output published
// on its broker (R2): job and output must name an MQTT output deployed
// here (in any case, as outputs are looked up), each row's topic must be
// one its template gives with {job} and {output} as job and output (the
// names the sender's topics were made with) and every {field} standing
// for any text, and its payload a JSON row with an "_id". It
// publishes the rows before the first bad one and returns how many, with
// an error wrapping ErrRelayRefused for that one (the rest are not
// published), or the publisher's error.
func (o *Outputs) PublishRelayed(job, output string, rows []*pb.RelayedRow) (int, error) {
	key, d := o.sink(job, output)
	s, ok := d.(*mqttSink)
	if !ok {
		return 0, fmt.Errorf("%w: %s is not an MQTT output of a job deployed here", ErrRelayRefused, key)
	}
	tmpl := s.template(job, output)
	for i, r := range rows {
		if err := checkRelayedRow(tmpl, r); err != nil {
			return i, fmt.Errorf("%w: output %s: %w", ErrRelayRefused, key, err)
		}
		if s.pub == nil {
			return i, fmt.Errorf("actors: output %s: no MQTT publisher configured", key)
		}
		if err := s.pub.Publish(r.Topic, r.Payload, s.qos); err != nil {
			return i, fmt.Errorf("actors: output %s: publish relayed row: %w", key, err)
		}
	}
	return len(rows), nil
}

// relayRows hands published rows to the relay link, if any (R1), under
// the job and output names their topics were made with.
func (s *mqttSink) relayRows(rows []*pb.OutboxEntry) {
	if s.relay == nil || len(rows) == 0 {
		return
	}
	r := s.relay.Load()
	if r == nil || r.l == nil {
		return
	}
	job, output := s.job, s.output
	if n := s.names.Load(); n != nil {
		job, output = n[0], n[1]
	}
	r.l.RelayRows(job, output, rows)
}

// template is the sink's topic template for a job and output: the
// literal pieces between its {field} placeholders ({job} and {output}
// filled in as topicFor fills them).
func (s *mqttSink) template(job, output string) []string {
	topic := strings.NewReplacer("{job}", job, "{output}", output).Replace(s.topic)
	var parts []string
	for {
		i := strings.IndexByte(topic, '{')
		j := -1
		if i >= 0 {
			j = strings.IndexByte(topic[i:], '}')
		}
		if j < 0 {
			return append(parts, topic)
		}
		parts = append(parts, topic[:i])
		topic = topic[i+j+1:]
	}
}

// checkRelayedRow checks a relayed row against the output's template: a
// valid MQTT topic name it can give, and a JSON object that starts with
// an "_id" as rowEntry writes it.
func checkRelayedRow(tmpl []string, r *pb.RelayedRow) error {
	t := r.GetTopic()
	if t == "" || len(t) > 65535 || !utf8.ValidString(t) || strings.ContainsAny(t, "+#\x00") {
		return fmt.Errorf("topic %.64q is not an MQTT topic name", t)
	}
	if !matchTemplate(tmpl, t) {
		return fmt.Errorf("topic %.64q is not one the output's template gives", t)
	}
	p := r.GetPayload()
	if !isRowStart(p, false) || !json.Valid(p) {
		return fmt.Errorf("payload on %.64q is not an output row", t)
	}
	return nil
}

// matchTemplate reports whether topic is parts joined with any text in
// place of each placeholder between them.
func matchTemplate(parts []string, topic string) bool {
	if len(parts) == 1 {
		return topic == parts[0]
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(topic) < len(first)+len(last) || !strings.HasPrefix(topic, first) || !strings.HasSuffix(topic, last) {
		return false
	}
	// Between the two ends, each literal piece in order; the leftmost
	// place each can go leaves the most room for the rest.
	rest := topic[len(first) : len(topic)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}
