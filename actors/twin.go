package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Device twins as IoT Hub devices use them over MQTT (iothub.go serves
// the topics). A twin has desired properties, set by operators (SetDesired),
// and reported properties, patched by the device (a JSON merge patch,
// RFC 7386: null deletes). Each side has a version that grows by one per
// change. A reported patch goes through the ingest log like any input
// (input twinReportedInput), and so do desired properties an operator
// sets (twinDesiredInput): each is durable once acknowledged, and a
// replay applies it again, in order, to the same result; jobs do not see
// them. Both sides are kept in the partition's checkpoint.

// The system inputs of the twin's writes: reported-property patches, and
// desired properties set by an operator.
const (
	twinReportedInput = "$twin.reported"
	twinDesiredInput  = "$twin.desired"
)

// IoT Hub's limits on a twin's reported properties; maxTwinBytes bounds
// desired properties too.
const (
	maxTwinBytes = 32 << 10
	maxTwinDepth = 10
)

// ErrTwin is wrapped by a reported patch the twin refuses.
var ErrTwin = errors.New("actors: twin patch refused")

// Twin is a device's twin as IoT Hub returns it: each side with its
// "$version".
type Twin struct {
	Desired         json.RawMessage
	DesiredVersion  uint64
	Reported        json.RawMessage
	ReportedVersion uint64
}

// JSON is the twin document of IoT Hub's GET twin response.
func (t Twin) JSON() []byte {
	b, _ := json.Marshal(map[string]json.RawMessage{"desired": withVersion(t.Desired, t.DesiredVersion), "reported": withVersion(t.Reported, t.ReportedVersion)})
	return b
}

// desiredJSON is the desired side with its "$version", as IoT Hub sends
// a desired properties update.
func (t Twin) desiredJSON() []byte { return withVersion(t.Desired, t.DesiredVersion) }

func withVersion(doc json.RawMessage, version uint64) json.RawMessage {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(doc, &m)
	m["$version"] = json.RawMessage(fmt.Sprint(version))
	b, _ := json.Marshal(m)
	return b
}

// twinMsg asks a partition for a device's twin.
type twinMsg struct{ id string }

// TwinOf returns a device's twin (empty sides, version 0, for a device
// the gateway has not heard of).
func (g *Gateway) TwinOf(ctx context.Context, id string) (Twin, error) {
	res, err := g.system.Root.RequestFuture(g.parts[g.partitionOf(id)], &twinMsg{id: id}, timeoutOf(ctx)).Result()
	if err != nil {
		return Twin{}, err
	}
	if err, ok := res.(error); ok {
		return Twin{}, err
	}
	return res.(Twin), nil
}

// PatchReported logs a device's reported-property patch (a JSON object)
// and returns once it is durable; the partition applies it in log order.
func (g *Gateway) PatchReported(id string, patch []byte) error {
	if err := checkTwinPatch(patch); err != nil {
		return err
	}
	return g.logTwinWrite(event{input: twinReportedInput, device: id, payload: patch})
}

// logTwinWrite logs a write to a twin and returns once it is durable and
// handed to its partition, so a read of the twin after it sees it.
func (g *Gateway) logTwinWrite(e event) error {
	gen, err := g.enqueueEvent(e)
	if err != nil {
		return err
	}
	if gen == nil {
		// In memory: the event waits in its partition's batch; send it now.
		g.flushAll()
		return nil
	}
	if err := gen.wait(); err != nil {
		return err
	}
	if gen.sent != nil {
		<-gen.sent
	}
	return nil
}

func checkTwinPatch(patch []byte) error {
	if len(patch) > maxTwinBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTwin, len(patch), maxTwinBytes)
	}
	var v any
	if err := json.Unmarshal(patch, &v); err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrTwin, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("%w: a patch is a JSON object", ErrTwin)
	}
	if depth(v) > maxTwinDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrTwin, maxTwinDepth)
	}
	return nil
}

func depth(v any) int {
	m, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	d := 0
	for _, c := range m {
		d = max(d, depth(c))
	}
	return d + 1
}

// applyTwinWrite hands a logged write to a twin to the device's actor: a
// reported patch it merges, or desired properties it sets.
func (p *partition) applyTwinWrite(e event) {
	if p.scratch || e.device == "" {
		return // a rebuild has no device actors
	}
	p.awake() // an actor activated for a write is passivated at the next sweep
	p.sendSummary(e.device)
	var m any = &twinPatchMsg{patch: e.payload}
	if e.input == twinDesiredInput {
		m = &setDesiredMsg{desired: e.payload}
	}
	p.ctx.Send(p.deviceActorOf(e.device), m)
}

// mergePatch applies an RFC 7386 merge patch to doc.
func mergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			sub, _ := doc[k].(map[string]any)
			doc[k] = mergePatch(sub, pv)
		default:
			doc[k] = v
		}
	}
	return doc
}
