package actors

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// methodDevice is a device that answers direct methods as an IoT Hub SDK
// does: reboot with 200 and a JSON payload echoing the call's, slow never.
func methodDevice(t *testing.T, url, id string) (calls func() []string) {
	c := mustDial(t, url, id, nil)
	var mu sync.Mutex
	var got []string
	h := func(cl paho.Client, m paho.Message) {
		mu.Lock()
		got = append(got, m.Topic()+" "+string(m.Payload()))
		mu.Unlock()
		rest := strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/")
		name, query, _ := strings.Cut(rest, "/?")
		q, _ := parseQuery(query)
		switch name {
		case "reboot":
			cl.Publish("$iothub/methods/res/200/?$rid="+q, 0, false, `{"rebooting":true,"asked":`+string(m.Payload())+`}`)
		case "bad":
			cl.Publish("$iothub/methods/res/500/?$rid="+q, 0, false, `not json`)
		}
	}
	require.Equal(t, byte(0), subackQoS(t, c, "$iothub/methods/POST/#", 0, h))
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func parseQuery(q string) (string, error) {
	v, err := url.ParseQuery(q)
	return v.Get("$rid"), err
}

// TestDirectMethods: an operator's call reaches the device's connection
// only, through the device's actor, and the device's answer comes back
// to the caller; a device not connected, one that never answers, a bad
// call, and another device's forged answer each get their own outcome.
func TestDirectMethods(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{})
	url := "tcp://" + gw.b.Addr()
	calls := methodDevice(t, url, "press-1")
	other := newTwinClient(t, url, "press-2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	res, err := gw.g.InvokeMethod(ctx, "press-1", "reboot", []byte(`{"delay":5}`), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 200, res.Status)
	require.JSONEq(t, `{"rebooting":true,"asked":{"delay":5}}`, string(res.Payload))
	require.Len(t, calls(), 1)
	require.True(t, strings.HasPrefix(calls()[0], "$iothub/methods/POST/reboot/?$rid="), calls()[0])

	// An answer that is not JSON comes back as a JSON string.
	res, err = gw.g.InvokeMethod(ctx, "press-1", "bad", nil, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 500, res.Status)
	require.Equal(t, `"not json"`, string(res.Payload))

	// No answer: the caller times out, and the call is forgotten.
	_, err = gw.g.InvokeMethod(ctx, "press-1", "silent", nil, 200*time.Millisecond)
	require.ErrorIs(t, err, ErrMethodTimeout)

	// press-2 forging press-1's answers: its publish answers its own
	// actor, which waits for nothing, and press-1's caller is not fooled.
	done := make(chan error, 1)
	go func() {
		_, err := gw.g.InvokeMethod(ctx, "press-1", "silent", nil, 500*time.Millisecond)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	rid := strings.TrimPrefix(calls()[len(calls())-1], "$iothub/methods/POST/silent/?$rid=")
	rid = strings.Fields(rid)[0]
	other.publish(t, "$iothub/methods/res/200/?$rid="+rid, `{"forged":true}`)
	require.ErrorIs(t, <-done, ErrMethodTimeout)
	require.GreaterOrEqual(t, gw.g.methodStrayAnswers.Load(), uint64(1))

	// Not connected, or connected without subscribing to calls.
	_, err = gw.g.InvokeMethod(ctx, "press-9", "reboot", nil, time.Second)
	require.ErrorIs(t, err, ErrDeviceNotOnline)
	_, err = gw.g.InvokeMethod(ctx, "press-2", "reboot", nil, time.Second)
	require.ErrorIs(t, err, ErrDeviceNotOnline)

	// Bad calls.
	for _, c := range []struct {
		method, payload string
		timeout         time.Duration
	}{
		{"re/boot", "", 0}, {"#", "", 0}, {"reboot?x", "", 0}, {strings.Repeat("m", 101), "", 0},
		{"reboot", "{", 0}, {"reboot", `"` + strings.Repeat("x", MaxMethodPayload) + `"`, 0},
		{"reboot", "", time.Hour}, {"reboot", "", -time.Second},
	} {
		_, err = gw.g.InvokeMethod(ctx, "press-1", c.method, []byte(c.payload), c.timeout)
		require.ErrorIs(t, err, ErrBadRequest, "%q %d bytes %v", c.method, len(c.payload), c.timeout)
	}
	require.Len(t, calls(), 4, "no bad call reached the device")

	// At most MaxPendingMethods calls wait per device.
	var wg sync.WaitGroup
	errs := make(chan error, MaxPendingMethods+4)
	for i := 0; i < MaxPendingMethods+4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := gw.g.InvokeMethod(ctx, "press-1", "silent", nil, time.Second)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	busy, timeouts := 0, 0
	for err := range errs {
		switch {
		case err == nil:
		case strings.Contains(err.Error(), ErrMethodsBusy.Error()):
			busy++
		default:
			require.ErrorIs(t, err, ErrMethodTimeout)
			timeouts++
		}
	}
	require.Equal(t, 4, busy)
	require.Equal(t, MaxPendingMethods, timeouts)

	// The device's actor stays while calls wait, and its answer still
	// works after them.
	res, err = gw.g.InvokeMethod(ctx, "press-1", "reboot", []byte(`1`), 5*time.Second)
	require.NoError(t, err)
	var answer map[string]any
	require.NoError(t, json.Unmarshal(res.Payload, &answer))
	require.Equal(t, 1.0, answer["asked"])
}

// TestInvokeMethodRefusals: a call before the gateway has recovered its
// state is refused (it would activate an actor with an empty record
// beside the one recovery brings back), and a call whose context has
// ended returns at once.
func TestInvokeMethodRefusals(t *testing.T) {
	g, ctx := passThroughGateway(t, nil)
	done, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	_, err := g.InvokeMethod(done, "press-1", "reboot", nil, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
	g.ready.Store(false)
	_, err = g.InvokeMethod(ctx, "press-1", "reboot", nil, time.Second)
	require.ErrorIs(t, err, ErrNotReady)
	g.ready.Store(true)
	_, err = g.InvokeMethod(ctx, "press-1", "reboot", nil, time.Second)
	require.ErrorIs(t, err, ErrDeviceNotOnline, "no broker: not online")
	require.Equal(t, int64(1), g.deviceActorsLive.Load(), "the call activated the device's actor")
}
