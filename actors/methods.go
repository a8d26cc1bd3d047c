package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Direct methods: commands to a device, as IoT Hub's direct methods work
// over MQTT. An operator invokes a method (POST /v1/devices/{id}/methods/
// {name}); the device's actor gives the call a request id and the
// gateway's broker writes it to the device's connection:
//
//	$iothub/methods/POST/{name}/?$rid={rid}        the method's payload
//	$iothub/methods/res/{status}/?$rid={rid}       the device's answer
//
// The actor keeps the calls waiting for an answer (at most
// MaxPendingMethods per device) and answers each caller with the
// device's status and payload, or the call times out. A device that is
// not connected to this gateway's broker, or not subscribed to
// $iothub/methods/POST/#, is not online for methods: the call fails at
// once (IoT Hub's 404 DeviceNotOnline). Calls are not logged: like IoT
// Hub's, a call waiting when the gateway restarts is lost, and its caller
// gets an error.

// Limits of a direct method call.
const (
	// MaxPendingMethods is the most calls a device may have waiting.
	MaxPendingMethods = 16
	// MaxMethodPayload is the largest payload of a call or an answer
	// (IoT Hub's limit).
	MaxMethodPayload = 128 << 10
	// MaxMethodTimeout is the longest a caller may wait (IoT Hub's).
	MaxMethodTimeout = 300 * time.Second
	// DefaultMethodTimeout is how long a call waits unless told.
	DefaultMethodTimeout = 30 * time.Second
)

// Errors of a direct method call.
var (
	ErrDeviceNotOnline = errors.New("actors: device not online for direct methods (not connected to this gateway, or not subscribed to $iothub/methods/POST/#)")
	ErrMethodTimeout   = errors.New("actors: the device did not answer the direct method in time")
	ErrMethodsBusy     = fmt.Errorf("actors: the device has %d direct method calls waiting already", MaxPendingMethods)
)

// methodName: IoT Hub's method names are at most 100 characters; these
// stay clear of the topic's levels, wildcards and query string.
var methodName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)

// MethodResult is a device's answer to a direct method.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// MethodWriter is a publisher that can write a direct method call to a
// device's own connection (the embedded broker); ok is false when the
// device is not connected or not subscribed to method calls.
type MethodWriter interface {
	WriteMethod(id, topic string, payload []byte) (ok bool)
}

// methodMsg is a call, to the device's actor through its partition.
type methodMsg struct {
	id, method string
	payload    []byte
	deadline   time.Time
}

// methodAnswerMsg is a device's answer, to its actor.
type methodAnswerMsg struct {
	id, rid string
	status  int
	payload []byte
}

// methodReply answers the caller.
type methodReply struct {
	res MethodResult
	err error
}

// pendingMethod is a call waiting for the device's answer.
type pendingMethod struct {
	caller   *actor.PID
	deadline time.Time
}

// InvokeMethod calls method on device id with payload (JSON; empty is
// null) and waits up to timeout (0: DefaultMethodTimeout) for its answer.
func (g *Gateway) InvokeMethod(ctx context.Context, id, method string, payload []byte, timeout time.Duration) (MethodResult, error) {
	if err := checkDeviceID(id); err != nil {
		return MethodResult{}, err
	}
	if !methodName.MatchString(method) {
		return MethodResult{}, fmt.Errorf("%w: method name %q: want 1 to 100 letters, digits, '_', '.' or '-'", ErrBadRequest, method)
	}
	if len(payload) == 0 {
		payload = []byte("null")
	}
	if len(payload) > MaxMethodPayload {
		return MethodResult{}, fmt.Errorf("%w: payload of %d bytes, at most %d", ErrBadRequest, len(payload), MaxMethodPayload)
	}
	if !json.Valid(payload) {
		return MethodResult{}, fmt.Errorf("%w: the payload is not JSON", ErrBadRequest)
	}
	switch {
	case timeout == 0:
		timeout = DefaultMethodTimeout
	case timeout < 0 || timeout > MaxMethodTimeout:
		return MethodResult{}, fmt.Errorf("%w: timeout %v: want up to %v", ErrBadRequest, timeout, MaxMethodTimeout)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if timeout <= 0 || ctx.Err() != nil {
		return MethodResult{}, fmt.Errorf("actors: direct method %q on %q: %w", method, id, context.Cause(ctx))
	}
	if g.closed.Load() {
		return MethodResult{}, ErrClosed
	}
	if !g.ready.Load() {
		return MethodResult{}, ErrNotReady
	}
	m := &methodMsg{id: id, method: method, payload: payload, deadline: time.Now().Add(timeout)}
	f := g.system.Root.RequestFuture(g.parts[g.partitionOf(id)], m, timeout)
	type result struct {
		res any
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := f.Result()
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// The call's slot is freed at its deadline.
		return MethodResult{}, fmt.Errorf("actors: direct method %q on %q: %w", method, id, context.Cause(ctx))
	}
	if errors.Is(r.err, actor.ErrTimeout) {
		g.methodTimeouts.Add(1)
		return MethodResult{}, fmt.Errorf("%w (%v)", ErrMethodTimeout, timeout)
	}
	if r.err != nil {
		return MethodResult{}, fmt.Errorf("actors: direct method %q on %q: %w", method, id, r.err)
	}
	reply := r.res.(*methodReply)
	return reply.res, reply.err
}

// MethodAnswer takes a device's answer to a direct method (the broker
// calls it for $iothub/methods/res/{status}/?$rid={rid}). An answer no
// call waits for (late, or made up) is counted and dropped.
func (g *Gateway) MethodAnswer(id, rid string, status int, payload []byte) {
	if g.closed.Load() || checkDeviceID(id) != nil {
		return
	}
	// Dropped here, before it costs its partition anything, unless some
	// call waits: a device cannot flood the partitions with answers.
	// Request ids are decimal uint64s: at most 20 digits.
	if g.methodsPending.Load() <= 0 || len(payload) > MaxMethodPayload || len(rid) > 20 {
		g.methodStrayAnswers.Add(1)
		return
	}
	g.system.Root.Send(g.parts[g.partitionOf(id)], &methodAnswerMsg{id: id, rid: rid, status: status, payload: append([]byte(nil), payload...)})
}

// methodCall is the partition's part of a call: to the device's actor,
// on a partition this gateway serves.
func (p *partition) methodCall(ctx actor.Context, m *methodMsg) {
	if !p.active {
		ctx.Respond(&methodReply{err: fmt.Errorf("%w: its partition is served by another gateway", ErrDeviceNotOnline)})
		return
	}
	p.awake() // an actor activated for a call is passivated at the first sweep after its answer
	p.sendSummary(m.id)
	ctx.Forward(p.deviceActorOf(m.id))
}

// methodAnswer is the partition's part of an answer: to the device's
// actor if it has one (a call activates it, and keeps it while waiting).
func (p *partition) methodAnswer(m *methodAnswerMsg) {
	if pid := p.deviceActors[m.id]; pid != nil {
		p.ctx.Send(pid, m)
		return
	}
	p.g.methodStrayAnswers.Add(1)
}

// call starts a direct method call in the device's actor.
func (a *deviceActor) call(ctx actor.Context, m *methodMsg) {
	a.expireMethods(time.Now())
	if len(a.pending) >= MaxPendingMethods {
		ctx.Respond(&methodReply{err: ErrMethodsBusy})
		return
	}
	w, ok := a.g.publisher().(MethodWriter)
	if !ok {
		ctx.Respond(&methodReply{err: fmt.Errorf("%w: this gateway has no embedded broker", ErrDeviceNotOnline)})
		return
	}
	// Request ids are unique in the gateway's process and start from its
	// start time, so a late answer to a call made before a passivation
	// or a restart never matches a later call.
	rid := strconv.FormatUint(a.g.methodRID.Add(1), 10)
	if !w.WriteMethod(a.id, "$iothub/methods/POST/"+m.method+"/?$rid="+rid, m.payload) {
		ctx.Respond(&methodReply{err: ErrDeviceNotOnline})
		return
	}
	if a.pending == nil {
		a.pending = map[string]pendingMethod{}
	}
	a.pending[rid] = pendingMethod{caller: ctx.Sender(), deadline: m.deadline}
	a.g.methodCalls.Add(1)
	a.g.methodsPending.Add(1)
}

// answer hands a device's answer to the call waiting for it.
func (a *deviceActor) answer(ctx actor.Context, m *methodAnswerMsg) {
	a.expireMethods(time.Now())
	pm, ok := a.pending[m.rid]
	if !ok {
		a.g.methodStrayAnswers.Add(1)
		return
	}
	delete(a.pending, m.rid)
	a.g.methodsPending.Add(-1)
	payload := json.RawMessage(m.payload)
	if len(payload) == 0 || !json.Valid(payload) {
		// Answered to the caller as a JSON string rather than refused: the
		// device did answer.
		payload, _ = json.Marshal(string(m.payload))
	}
	ctx.Send(pm.caller, &methodReply{res: MethodResult{Status: m.status, Payload: payload}})
}

// expireMethods forgets calls whose callers stopped waiting (their
// futures timed out: the answer sent here only closes the books).
func (a *deviceActor) expireMethods(now time.Time) {
	for rid, pm := range a.pending {
		if now.After(pm.deadline) {
			delete(a.pending, rid)
			a.g.methodsPending.Add(-1)
			a.g.system.Root.Send(pm.caller, &methodReply{err: ErrMethodTimeout})
		}
	}
}
