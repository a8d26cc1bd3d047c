package actors

import (
	"reflect"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// brokerHousekeepingEvery is how often the embedded broker looks for
// expired client sessions, inflight and retained messages, and delayed
// wills. mochi does each every second, on four tickers of its own with no
// option to change them: a CPU profile of an idle gateway (issue 18,
// benchmarks/RESULTS.md "Idle CPU") found them a quarter of its CPU.
// Expiry comes up to this much late instead of up to a second late.
const brokerHousekeepingEvery = 10 * time.Second

// slowHousekeeping sets mochi's housekeeping tickers to every d. They sit
// in an unexported field (Server.loop), reached here by name through
// reflect and unsafe before the server starts serving; if a mochi release
// renames or retypes them, nothing is changed, the broker keeps its
// one-second tickers and false is returned
// (TestBrokerHousekeepingIsSlowed fails, so the upgrade notices).
func slowHousekeeping(srv *mqtt.Server, d time.Duration) bool {
	v := reflect.ValueOf(srv).Elem().FieldByName("loop")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	loop := v.Elem()
	tickerType := reflect.TypeOf((*time.Ticker)(nil))
	var tickers []*time.Ticker
	for _, name := range []string{"clientExpiry", "inflightExpiry", "retainedExpiry", "willDelaySend"} {
		f := loop.FieldByName(name)
		if !f.IsValid() || f.Type() != tickerType || !f.CanAddr() {
			return false
		}
		t := *(**time.Ticker)(unsafe.Pointer(f.UnsafeAddr()))
		if t == nil {
			return false
		}
		tickers = append(tickers, t)
	}
	for _, t := range tickers {
		t.Reset(d)
	}
	return true
}
