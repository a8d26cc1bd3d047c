package udf_test

import (
	"errors"
	"testing"
	"time"

	"github.com/millstream/millstream/operators/udf"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

func scalar(t *testing.T, code string) *udf.Func {
	t.Helper()
	return named(t, "f", code)
}

func named(t *testing.T, name, code string) *udf.Func {
	t.Helper()
	return timed(t, name, code, 5000)
}

// timed compiles a function with a time limit of ms: generous by default
// (the race detector and a loaded machine slow goja down a lot), short
// where the limit is what is tested.
func timed(t *testing.T, name, code string, ms uint32) *udf.Func {
	t.Helper()
	f, err := udf.Compile(&pb.Function{Name: name, Code: code, TimeoutMs: ms})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestUDFCallTypes(t *testing.T) {
	f := scalar(t, `function main(x) { return x; }`)
	rec := &value.Record{Names: []string{"a", "b"}, Vals: []value.Value{value.Int(1), value.Str("s")}}
	for _, v := range []value.Value{
		{}, value.BitValue(true), value.Int(42), value.FloatValue(1.5), value.Str("hé"),
		value.Time(value.FromTime(value.ToTime(638000000000000000))),
		value.RecordValue(rec),
		value.ArrayValue(&value.Array{Items: []value.Value{value.Int(1), value.Str("x")}}),
	} {
		got, err := f.Call([]value.Value{v})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if !value.Equal(got, v) && !(v.IsNull() && got.IsNull()) {
			t.Errorf("identity of %s %s gave %s %s", v.Kind(), v, got.Kind(), got)
		}
	}
	g := scalar(t, `function main(a, b) { return a / b; }`)
	if got, _ := g.Call([]value.Value{value.Int(1), value.Int(4)}); got.Kind() != value.Float || got.Float() != 0.25 {
		t.Errorf("1/4 = %s %s", got.Kind(), got)
	}
	if got, _ := g.Call([]value.Value{value.Int(8), value.Int(4)}); got.Kind() != value.BigInt || got.Int() != 2 {
		t.Errorf("8/4 = %s %s", got.Kind(), got)
	}
}

func TestUDFSandbox(t *testing.T) {
	cases := []struct {
		name, code string
		want       error
	}{
		{"throw", `function main() { throw new Error("boom"); }`, udf.ErrThrown},
		{"random", `function main() { return Math.random(); }`, udf.ErrThrown},
		{"now", `function main() { return Date.now(); }`, udf.ErrThrown},
		{"new Date()", `function main() { return new Date(); }`, udf.ErrThrown},
		{"Date()", `function main() { return Date(); }`, udf.ErrThrown},
		{"loop", `function main() { for (;;) {} }`, udf.ErrTimeout},
		{"recursion", `function main() { return main(); }`, udf.ErrThrown},
		{"repeat", `function main() { return "x".repeat(1e9); }`, udf.ErrThrown},
		{"big result", `function main() { var a = []; for (var i = 0; i < 20000; i++) a.push(i); return a; }`, udf.ErrTooLarge},
		{"require", `function main() { return require("fs"); }`, udf.ErrThrown},
		{"function result", `function main() { return main; }`, udf.ErrThrown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := scalar(t, c.code)
			if c.want == udf.ErrTimeout {
				f = timed(t, "f", c.code, 200)
			}
			if _, err := f.Call(nil); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			// The runtime is usable after a failure.
			if _, err := f.Call(nil); !errors.Is(err, c.want) {
				t.Fatalf("second call: got %v, want %v", err, c.want)
			}
		})
	}
	if got, err := scalar(t, `function main() { return new Date(0).getUTCFullYear(); }`).Call(nil); err != nil || got.Int() != 1970 {
		t.Errorf("new Date(0): %s %v", got, err)
	}
}

// TestUDFNoStateBetweenCalls: globals are frozen (U4), so a call cannot
// count calls.
func TestUDFNoStateBetweenCalls(t *testing.T) {
	f := scalar(t, `var n = 0; var o = {c: 0}; function main() { n++; o.c++; Math.x = 1; return n + o.c; }`)
	for i := 0; i < 3; i++ {
		got, err := f.Call(nil)
		if err != nil || got.Int() != 0 {
			t.Fatalf("call %d: %s %v", i, got, err)
		}
	}
}

func TestUDFCompileErrors(t *testing.T) {
	for _, fn := range []*pb.Function{
		nil,
		{Name: "x", Code: "function main( {"},
		{Name: "x", Code: "var main = 1;"},
		{Name: "x", Code: "function main() {}", Language: "csharp"},
		{Name: "x", Code: "while (true) {}", TimeoutMs: 10},
		{Name: "x", Code: "function main() { this.init = function () {}; }", Kind: pb.Function_AGGREGATE},
	} {
		if _, err := udf.Compile(fn); err == nil {
			t.Errorf("%v: compiled", fn)
		}
	}
}

const twa = `function main() {
    this.init = function () { this.totalValue = 0.0; this.totalWeight = 0.0; }
    this.accumulate = function (value, timestamp) {
        this.totalValue += value.level * value.weight;
        this.totalWeight += value.weight;
    }
    this.deaccumulate = function (value, timestamp) {
        this.totalValue -= value.level * value.weight;
        this.totalWeight -= value.weight;
    }
    this.deaccumulateState = function (otherState) {
        this.totalValue -= otherState.totalValue;
        this.totalWeight -= otherState.totalWeight;
    }
    this.computeResult = function () {
        if (this.totalValue == 0) { return 0; }
        return this.totalValue / this.totalWeight;
    }
}`

func TestUDAReduce(t *testing.T) {
	f, err := udf.Compile(&pb.Function{Name: "twa", Code: twa, Kind: pb.Function_AGGREGATE})
	if err != nil {
		t.Fatal(err)
	}
	row := func(level, weight int64) value.Value {
		return value.RecordValue(&value.Record{Names: []string{"level", "weight"}, Vals: []value.Value{value.Int(level), value.Int(weight)}})
	}
	got, err := f.Reduce([]value.Value{row(90, 2), row(60, 1)}, []int64{1, 2})
	if err != nil || got.Int() != 80 {
		t.Fatalf("twa = %s %v", got, err)
	}
	if got, err := f.Reduce(nil, nil); err != nil || got.Int() != 0 {
		t.Fatalf("empty twa = %s %v", got, err)
	}
	ts, err := udf.Compile(&pb.Function{Name: "last", Kind: pb.Function_AGGREGATE, Code: `function main() {
		this.init = function () { this.t = null; };
		this.accumulate = function (v, ts) { this.t = ts; };
		this.computeResult = function () { return this.t; };
	}`})
	if err != nil {
		t.Fatal(err)
	}
	tick := value.FromTime(value.ToTime(638000000000000000))
	if got, err := ts.Reduce([]value.Value{value.Int(1)}, []int64{tick}); err != nil || got.Kind() != value.DateTime || got.Ticks() != tick {
		t.Fatalf("timestamp = %s %s %v", got.Kind(), got, err)
	}
}

// TestUDFImplicitGlobal: the Stream Analytics samples assign undeclared
// names (result = ...); that works, and leaves nothing for the next call.
func TestUDFImplicitGlobal(t *testing.T) {
	f := scalar(t, `function main(x) { if (x) { leftover = 1; } return typeof leftover; }`)
	for i, want := range []string{"number", "undefined"} {
		got, err := f.Call([]value.Value{value.BitValue(i == 0)})
		if err != nil || got.Str() != want {
			t.Fatalf("call %d: %s %v, want %s", i, got, err, want)
		}
	}
	g := named(t, "hex2Int", `function hex2Int(hexValue) { return parseInt(hexValue, 16); }`)
	if got, err := g.Call([]value.Value{value.Str("ff")}); err != nil || got.Int() != 255 {
		t.Fatalf("hex2Int = %s %v", got, err)
	}
}

// TestUDFMemoryBound: a call that keeps allocating is stopped by its
// allocation bound (U5) long before its time limit, and the function
// works again afterwards.
func TestUDFMemoryBound(t *testing.T) {
	f, err := udf.Compile(&pb.Function{Name: "hog", Code: `function main(n) {
		if (n < 0) { var a = []; while (true) { a.push({i: a.length, s: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + a.length}); } }
		return n + 1;
	}`, TimeoutMs: 60000})
	if err != nil {
		t.Fatal(err)
	}
	f.SetMaxAlloc(16 << 20)
	start := time.Now()
	_, err = f.Call([]value.Value{value.Int(-1)})
	if !errors.Is(err, udf.ErrMemory) {
		t.Fatalf("got %v, want %v", err, udf.ErrMemory)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("stopped after %v, not by the memory bound", took)
	}
	got, err := f.Call([]value.Value{value.Int(1)})
	if err != nil || got.Int() != 2 {
		t.Fatalf("after the interrupt: %v %v", got, err)
	}
}
