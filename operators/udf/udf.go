package udf

import (
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Defaults of a Function's limits (pb.Function field comments).
const (
	DefaultTimeout        = 100 * time.Millisecond
	DefaultMaxResultBytes = 64 << 10
	// MaxCallStack bounds how deep JavaScript calls nest (recursion).
	MaxCallStack = 256
	// MaxCallAllocBytes bounds what one call may allocate (U5).
	MaxCallAllocBytes = 64 << 20
	// memoryWatchAfter is how long a call runs before its allocations
	// are watched: most calls end long before, and pay nothing for it.
	memoryWatchAfter = 5 * time.Millisecond
)

// Sentinel errors.
var (
	ErrBadFunction = errors.New("udf: invalid function")
	ErrTimeout     = errors.New("udf: CPU time limit exceeded")
	ErrMemory      = errors.New("udf: memory limit exceeded")
	ErrTooLarge    = errors.New("udf: result too large")
	ErrThrown      = errors.New("udf: exception")
)

// Func is one compiled function or aggregate, with its own JavaScript
// runtime.
type Func struct {
	name     string
	agg      bool
	vm       *goja.Runtime
	main     goja.Value
	call     goja.Callable
	timeout  time.Duration
	maxBytes int
	maxAlloc atomic.Uint64 // MaxCallAllocBytes; smaller in tests
	args     []goja.Value
	// The allocation watch (U5): its timer, the counter when the call
	// began, whether a call runs, and the sample the call reads.
	watch     *time.Timer
	callStart atomic.Uint64
	running   atomic.Bool
	sample    []metrics.Sample
	// globals is how many enumerable globals the script made; a call
	// that leaves more (an assignment to an undeclared name) has them
	// deleted (U4).
	globals int
}

// Compile loads a function's code and checks that it defines main (for an
// aggregate: a constructor whose object has init, accumulate and
// computeResult).
func Compile(fn *pb.Function) (*Func, error) {
	if fn == nil || fn.Name == "" {
		return nil, fmt.Errorf("%w: no name", ErrBadFunction)
	}
	if l := strings.ToLower(fn.Language); l != "" && l != "javascript" && l != "js" {
		return nil, fmt.Errorf("%w: %s: language %q (only javascript)", ErrBadFunction, fn.Name, fn.Language)
	}
	f := &Func{
		name:     fn.Name,
		agg:      fn.Kind == pb.Function_AGGREGATE,
		vm:       goja.New(),
		timeout:  time.Duration(fn.TimeoutMs) * time.Millisecond,
		maxBytes: int(fn.MaxResultBytes),
		globals:  -1,
		sample:   []metrics.Sample{{Name: allocsMetric}},
	}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	f.maxAlloc.Store(MaxCallAllocBytes)
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxResultBytes
	}
	f.vm.SetMaxCallStackSize(MaxCallStack)
	if _, err := f.vm.RunString(fmt.Sprintf(sandboxJS, f.maxBytes)); err != nil {
		return nil, fmt.Errorf("udf: %s: sandbox: %w", fn.Name, err)
	}
	prog, err := goja.Compile(fn.Name, fn.Code, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadFunction, fn.Name, err)
	}
	if _, err := f.guard(func() (goja.Value, error) { return f.vm.RunProgram(prog) }); err != nil {
		return nil, fmt.Errorf("%w: %s: loading: %w", ErrBadFunction, fn.Name, err)
	}
	f.main = f.vm.Get("main")
	call, ok := goja.AssertFunction(f.main)
	if !ok {
		// The older Stream Analytics form: a function named as the alias.
		f.main = f.vm.Get(fn.Name)
		if call, ok = goja.AssertFunction(f.main); !ok {
			return nil, fmt.Errorf("%w: %s: the code must define function main (or function %s)", ErrBadFunction, fn.Name, fn.Name)
		}
	}
	f.call = call
	if _, err := f.guard(func() (goja.Value, error) { return f.vm.RunString(freezeJS) }); err != nil {
		return nil, fmt.Errorf("udf: %s: freezing globals: %w", fn.Name, err)
	}
	f.globals = len(f.vm.GlobalObject().Keys())
	if f.agg {
		obj, err := f.newState()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: new main(): %w", ErrBadFunction, fn.Name, err)
		}
		for _, m := range []string{"init", "accumulate", "computeResult"} {
			if _, ok := goja.AssertFunction(obj.Get(m)); !ok {
				return nil, fmt.Errorf("%w: %s: an aggregate's main must set this.%s to a function", ErrBadFunction, fn.Name, m)
			}
		}
	}
	return f, nil
}

// Name returns the function's name.
func (f *Func) Name() string { return f.name }

// Aggregate reports whether the function is an aggregate.
func (f *Func) Aggregate() bool { return f.agg }

// Call runs a scalar function. args are borrowed.
func (f *Func) Call(args []value.Value) (value.Value, error) {
	f.args = f.args[:0]
	for _, a := range args {
		f.args = append(f.args, toJS(f.vm, a))
	}
	res, err := f.guard(func() (goja.Value, error) { return f.call(goja.Undefined(), f.args...) })
	if err != nil {
		return value.Value{}, err
	}
	return f.result(res)
}

// Reduce runs an aggregate over one window's values and their times (in
// ticks): new main(), init(), accumulate(value, timestamp) for each, then
// computeResult(), all within one time limit.
func (f *Func) Reduce(vals []value.Value, times []int64) (value.Value, error) {
	res, err := f.guard(func() (goja.Value, error) {
		obj, err := f.newState()
		if err != nil {
			return nil, err
		}
		init, _ := goja.AssertFunction(obj.Get("init"))
		acc, _ := goja.AssertFunction(obj.Get("accumulate"))
		result, _ := goja.AssertFunction(obj.Get("computeResult"))
		if init == nil || acc == nil || result == nil {
			return nil, errors.New("init, accumulate and computeResult must be functions")
		}
		if _, err := init(obj); err != nil {
			return nil, err
		}
		for i, v := range vals {
			if _, err := acc(obj, toJS(f.vm, v), toJS(f.vm, value.Time(times[i]))); err != nil {
				return nil, err
			}
		}
		return result(obj)
	})
	if err != nil {
		return value.Value{}, err
	}
	return f.result(res)
}

func (f *Func) newState() (*goja.Object, error) { return f.vm.New(f.main) }

// guard runs fn under the time limit and turns JavaScript failures into
// errors (U2).
func (f *Func) guard(fn func() (goja.Value, error)) (v goja.Value, err error) {
	t := time.AfterFunc(f.timeout, func() { f.vm.Interrupt(ErrTimeout) })
	f.watchMemory()
	defer func() {
		t.Stop()
		f.endWatch()
		f.vm.ClearInterrupt()
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %v", ErrThrown, r)
		}
	}()
	v, err = fn()
	if g := f.vm.GlobalObject(); f.globals >= 0 && len(g.Keys()) != f.globals {
		for _, k := range g.Keys() {
			_ = g.Delete(k) // the script's own are frozen and stay
		}
	}
	var ie *goja.InterruptedError
	var ex *goja.Exception
	var so *goja.StackOverflowError
	switch {
	case err == nil:
	case errors.As(err, &ie) && isMemory(ie.Value()):
		err = fmt.Errorf("%w: over %d MiB allocated in one call", ErrMemory, f.maxAlloc.Load()>>20)
	case errors.As(err, &ie):
		err = fmt.Errorf("%w (%s)", ErrTimeout, f.timeout)
	case errors.As(err, &so):
		err = fmt.Errorf("%w: call stack over %d", ErrThrown, MaxCallStack)
	case errors.As(err, &ex):
		err = fmt.Errorf("%w: %s", ErrThrown, ex.Value().String())
	default:
		err = fmt.Errorf("%w: %w", ErrThrown, err)
	}
	return v, err
}

func (f *Func) result(v goja.Value) (value.Value, error) {
	budget := f.maxBytes
	r, err := fromJS(v, &budget, 0)
	if err != nil {
		return value.Value{}, err
	}
	return r, nil
}

// toJS converts a value for a call: bigint and float are numbers,
// datetime a Date, record an object, array an array, NULL null.
func toJS(vm *goja.Runtime, v value.Value) goja.Value {
	switch v.Kind() {
	case value.Null:
		return goja.Null()
	case value.Bit:
		return vm.ToValue(v.Bool())
	case value.BigInt:
		return vm.ToValue(v.Int())
	case value.Float:
		return vm.ToValue(v.Float())
	case value.String:
		return vm.ToValue(v.Str())
	case value.DateTime:
		d, err := vm.New(vm.Get("Date"), vm.ToValue(value.ToTime(v.Ticks()).UnixMilli()))
		if err != nil {
			return goja.Null()
		}
		return d
	case value.RecordKind:
		o := vm.NewObject()
		r := v.Record()
		for i, n := range r.Names {
			_ = o.Set(n, toJS(vm, r.Vals[i]))
		}
		return o
	case value.ArrayKind:
		items := v.Array().Items
		vs := make([]any, len(items))
		for i, it := range items {
			vs[i] = toJS(vm, it)
		}
		return vm.NewArray(vs...)
	}
	return goja.Null()
}

// fromJS converts a result (U3): a number is a bigint when it is whole
// and within ±2^53, a float otherwise; a Date a datetime; an array an
// array; another object a record of its own enumerable properties;
// undefined and null NULL. budget is what is left of the size limit.
func fromJS(v goja.Value, budget *int, depth int) (value.Value, error) {
	if depth > value.DefaultMaxDepth {
		return value.Value{}, fmt.Errorf("%w: nested over %d levels", ErrTooLarge, value.DefaultMaxDepth)
	}
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return value.Value{}, spend(budget, 4)
	}
	switch x := v.Export().(type) {
	case bool:
		return value.BitValue(x), spend(budget, 5)
	case int64:
		return number(float64(x), budget)
	case float64:
		return number(x, budget)
	case string:
		return value.Str(x), spend(budget, len(x)+2)
	case time.Time:
		return value.Time(value.FromTime(x)), spend(budget, 30)
	}
	obj, ok := v.(*goja.Object)
	if !ok {
		return value.Value{}, fmt.Errorf("%w: cannot return a %s", ErrThrown, v.ExportType())
	}
	if _, fn := goja.AssertFunction(obj); fn {
		return value.Value{}, fmt.Errorf("%w: cannot return a function", ErrThrown)
	}
	if obj.ClassName() == "Array" {
		n := obj.Get("length").ToInteger()
		if err := spend(budget, int(min(n, math.MaxInt32))+2); err != nil {
			return value.Value{}, err
		}
		arr := &value.Array{Items: make([]value.Value, 0, n)}
		for i := int64(0); i < n; i++ {
			it, err := fromJS(obj.Get(fmt.Sprint(i)), budget, depth+1)
			if err != nil {
				return value.Value{}, err
			}
			arr.Items = append(arr.Items, it)
		}
		return value.ArrayValue(arr), nil
	}
	rec := &value.Record{}
	for _, k := range obj.Keys() {
		if err := spend(budget, len(k)+4); err != nil {
			return value.Value{}, err
		}
		it, err := fromJS(obj.Get(k), budget, depth+1)
		if err != nil {
			return value.Value{}, err
		}
		rec.Set(k, it)
	}
	return value.RecordValue(rec), spend(budget, 2)
}

func number(f float64, budget *int) (value.Value, error) {
	if err := spend(budget, 8); err != nil {
		return value.Value{}, err
	}
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return value.Int(int64(f)), nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return value.Value{}, nil
	}
	return value.FloatValue(f), nil
}

func spend(budget *int, n int) error {
	*budget -= n
	if *budget < 0 {
		return ErrTooLarge
	}
	return nil
}

// sandboxJS runs before the user's code (U1, U3); %d is the string limit.
const sandboxJS = `(function (max) {
  "use strict";
  var nondeterministic = function (what) {
    return function () { throw new Error(what + " is not available: a function must give the same result on replay"); };
  };
  Object.defineProperty(Math, "random", {value: nondeterministic("Math.random"), writable: false, configurable: false});
  var D = Date;
  var SafeDate = new Proxy(D, {
    construct: function (t, args, nt) {
      if (args.length === 0) { throw new Error("new Date() without arguments is not available: a function must give the same result on replay"); }
      return Reflect.construct(t, args, nt);
    },
    apply: nondeterministic("Date()")
  });
  Object.defineProperty(D, "now", {value: nondeterministic("Date.now"), writable: false, configurable: false});
  Object.defineProperty(globalThis, "Date", {value: SafeDate, writable: false, configurable: false});
  var S = String.prototype;
  var bound = function (name, grow) {
    var orig = S[name];
    Object.defineProperty(S, name, {value: function () {
      if (grow(String(this), arguments) > max) { throw new RangeError(name + ": string over " + max + " bytes"); }
      return orig.apply(this, arguments);
    }, writable: false, configurable: false});
  };
  bound("repeat", function (s, a) { return s.length * Number(a[0]); });
  bound("padStart", function (s, a) { return Number(a[0]); });
  bound("padEnd", function (s, a) { return Number(a[0]); });
})(%d);`

// freezeJS freezes, deeply, everything reachable from the global object
// once the user's script has run, built-ins included, so no call can
// leave state for the next (U4). Objects a call creates stay open, and so
// does the global object itself: a sloppy assignment to an undeclared
// name (result = ... in the Stream Analytics samples) works, and guard
// deletes the global it made after the call.
const freezeJS = `(function () {
  var seen = new Set();
  var freeze = function (o) {
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) { return; }
    seen.add(o);
    Object.getOwnPropertyNames(o).forEach(function (k) {
      var d = Object.getOwnPropertyDescriptor(o, k);
      if (d && "value" in d) { freeze(d.value); }
    });
    var p = Object.getPrototypeOf(o);
    if (p) { freeze(p); }
    if (o !== globalThis) { Object.freeze(o); }
  };
  freeze(globalThis);
  Object.getOwnPropertyNames(globalThis).forEach(function (k) {
    var d = Object.getOwnPropertyDescriptor(globalThis, k);
    if (d.configurable || d.writable) {
      Object.defineProperty(globalThis, k, {writable: false, configurable: false});
    }
  });
})();`

// watchMemory starts watching the call that begins (U5): the process's
// allocation counter (runtime/metrics) is read now; if the call is still
// running after memoryWatchAfter, a timer goroutine reads it again every
// memoryWatchAfter until the call ends, and interrupts the call once the
// process allocated more than maxAlloc since it began. The counter is the
// whole process's, so the bound is approximate. One timer and one sample
// per Func, reused: a call pays two atomic stores and one counter read.
func (f *Func) watchMemory() {
	metrics.Read(f.sample)
	f.callStart.Store(f.sample[0].Value.Uint64())
	f.running.Store(true)
	if f.watch == nil {
		f.watch = time.AfterFunc(memoryWatchAfter, f.watchLoop)
		return
	}
	f.watch.Reset(memoryWatchAfter)
}

func (f *Func) endWatch() {
	f.running.Store(false)
	f.watch.Stop()
}

func (f *Func) watchLoop() {
	s := []metrics.Sample{{Name: allocsMetric}}
	for f.running.Load() {
		metrics.Read(s)
		if s[0].Value.Uint64()-f.callStart.Load() > f.maxAlloc.Load() {
			f.vm.Interrupt(ErrMemory)
			return
		}
		time.Sleep(memoryWatchAfter)
	}
}

const allocsMetric = "/gc/heap/allocs:bytes"

func isMemory(v any) bool {
	e, ok := v.(error)
	return ok && errors.Is(e, ErrMemory)
}
