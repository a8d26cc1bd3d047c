package value

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is the type of a Value, named as in Stream Analytics.
type Kind uint8

// The kinds of values.
const (
	Null Kind = iota
	Bit
	BigInt
	Float
	String
	DateTime
	RecordKind
	ArrayKind
)

// String returns the type name GetType() reports.
func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bit:
		return "bit"
	case BigInt:
		return "bigint"
	case Float:
		return "float"
	case String:
		return "nvarchar(max)"
	case DateTime:
		return "datetime"
	case RecordKind:
		return "record"
	case ArrayKind:
		return "array"
	}
	return "unknown"
}

// Value is one value. The zero Value is NULL.
type Value struct {
	k   Kind
	n   uint64 // bit (0/1), bigint, float bits, datetime ticks
	s   string
	rec *Record
	arr *Array
}

// Array is an ordered list of values.
type Array struct {
	Items []Value
}

// Constructors.

// NullValue returns NULL.
func NullValue() Value { return Value{} }

// BitValue returns a bit.
func BitValue(b bool) Value {
	if b {
		return Value{k: Bit, n: 1}
	}
	return Value{k: Bit}
}

// Int returns a bigint.
func Int(i int64) Value { return Value{k: BigInt, n: uint64(i)} }

// FloatValue returns a float.
func FloatValue(f float64) Value { return Value{k: Float, n: math.Float64bits(f)} }

// Str returns an nvarchar(max).
func Str(s string) Value { return Value{k: String, s: s} }

// Time returns a datetime from ticks.
func Time(ticks int64) Value { return Value{k: DateTime, n: uint64(ticks)} }

// RecordValue wraps a record; nil gives NULL.
func RecordValue(r *Record) Value {
	if r == nil {
		return Value{}
	}
	return Value{k: RecordKind, rec: r}
}

// ArrayValue wraps an array; nil gives NULL.
func ArrayValue(a *Array) Value {
	if a == nil {
		return Value{}
	}
	return Value{k: ArrayKind, arr: a}
}

// Accessors. Each returns the zero value when the kind does not match.

// Kind returns the kind.
func (v Value) Kind() Kind { return v.k }

// IsNull reports whether v is NULL.
func (v Value) IsNull() bool { return v.k == Null }

// Bool returns a bit's value.
func (v Value) Bool() bool { return v.k == Bit && v.n != 0 }

// Int returns a bigint's (or bit's) value.
func (v Value) Int() int64 { return int64(v.n) }

// Float returns a float's value.
func (v Value) Float() float64 { return math.Float64frombits(v.n) }

// Str returns a string's value.
func (v Value) Str() string { return v.s }

// Ticks returns a datetime's ticks.
func (v Value) Ticks() int64 { return int64(v.n) }

// Record returns a record value's record.
func (v Value) Record() *Record { return v.rec }

// Array returns an array value's array.
func (v Value) Array() *Array { return v.arr }

// IsNumeric reports bigint or float.
func (v Value) IsNumeric() bool { return v.k == BigInt || v.k == Float }

// AsFloat converts a bigint, float or bit to float64.
func (v Value) AsFloat() (float64, bool) {
	switch v.k {
	case BigInt, Bit:
		return float64(int64(v.n)), true
	case Float:
		return v.Float(), true
	}
	return 0, false
}

// String formats v for messages and tests (not JSON).
func (v Value) String() string {
	switch v.k {
	case Null:
		return "NULL"
	case Bit:
		if v.n != 0 {
			return "true"
		}
		return "false"
	case BigInt:
		return strconv.FormatInt(int64(v.n), 10)
	case Float:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case String:
		return strconv.Quote(v.s)
	case DateTime:
		return FormatTicks(int64(v.n))
	default:
		return string(AppendJSON(nil, v))
	}
}

// Clone returns a deep copy whose strings no longer share memory with a
// decoder's input.
func (v Value) Clone() Value {
	switch v.k {
	case String:
		v.s = strings.Clone(v.s)
	case RecordKind:
		v.rec = v.rec.Clone()
	case ArrayKind:
		items := make([]Value, len(v.arr.Items))
		for i, it := range v.arr.Items {
			items[i] = it.Clone()
		}
		v.arr = &Array{Items: items}
	}
	return v
}

// Equal reports whether a and b are the same value of the same kind
// (bigint and float compare by number). NULL equals NULL here: this is
// grouping equality, not SQL `=`.
func Equal(a, b Value) bool {
	if a.k != b.k {
		if a.IsNumeric() && b.IsNumeric() {
			fa, _ := a.AsFloat()
			fb, _ := b.AsFloat()
			return fa == fb
		}
		return false
	}
	switch a.k {
	case Null:
		return true
	case String:
		return a.s == b.s
	case RecordKind:
		if len(a.rec.Names) != len(b.rec.Names) {
			return false
		}
		for i := range a.rec.Names {
			if a.rec.Names[i] != b.rec.Names[i] || !Equal(a.rec.Vals[i], b.rec.Vals[i]) {
				return false
			}
		}
		return true
	case ArrayKind:
		if len(a.arr.Items) != len(b.arr.Items) {
			return false
		}
		for i := range a.arr.Items {
			if !Equal(a.arr.Items[i], b.arr.Items[i]) {
				return false
			}
		}
		return true
	case Float:
		return a.Float() == b.Float()
	}
	return a.n == b.n
}

// ErrIncomparable is returned by Compare for values of unrelated types.
type ErrIncomparable struct{ A, B Kind }

func (e *ErrIncomparable) Error() string {
	return fmt.Sprintf("value: cannot compare %s with %s", e.A, e.B)
}

// Compare orders two non-NULL values: numbers by value, strings ordinally,
// datetimes by time, bits as 0/1. A string compared with a datetime is read
// as a datetime. Other mixes are an error.
func Compare(a, b Value) (int, error) {
	if a.k == b.k {
		switch a.k {
		case BigInt, DateTime, Bit:
			return cmpInt(int64(a.n), int64(b.n)), nil
		case Float:
			return cmpFloat(a.Float(), b.Float()), nil
		case String:
			return strings.Compare(a.s, b.s), nil
		}
		return 0, &ErrIncomparable{a.k, b.k}
	}
	if (a.IsNumeric() || a.k == Bit) && (b.IsNumeric() || b.k == Bit) {
		if a.k != Float && b.k != Float {
			return cmpInt(int64(a.n), int64(b.n)), nil
		}
		fa, _ := a.AsFloat()
		fb, _ := b.AsFloat()
		return cmpFloat(fa, fb), nil
	}
	if a.k == DateTime && b.k == String {
		t, err := ParseTime(b.s)
		if err != nil {
			return 0, err
		}
		return cmpInt(int64(a.n), t), nil
	}
	if a.k == String && b.k == DateTime {
		t, err := ParseTime(a.s)
		if err != nil {
			return 0, err
		}
		return cmpInt(t, int64(b.n)), nil
	}
	return 0, &ErrIncomparable{a.k, b.k}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
