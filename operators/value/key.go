package value

import (
	"encoding/binary"
	"math"
)

// AppendKeys appends the encodings of a key tuple, one after another.
func AppendKeys(b []byte, vs []Value) []byte {
	for _, v := range vs {
		b = AppendKey(b, v)
	}
	return b
}

// AppendKey appends a binary encoding of v to b such that two values are
// grouping-equal (Equal) exactly when their encodings are equal. Numbers that
// are equal as floats encode the same, so 1 and 1.0 fall in one group.
func AppendKey(b []byte, v Value) []byte {
	switch v.k {
	case Null:
		return append(b, 0)
	case Bit:
		return append(b, 1, byte(v.n))
	case BigInt:
		if f := float64(int64(v.n)); int64(f) == int64(v.n) {
			return binary.LittleEndian.AppendUint64(append(b, 2), math.Float64bits(f+0))
		}
		return binary.LittleEndian.AppendUint64(append(b, 3), v.n)
	case Float:
		f := v.Float() + 0 // -0 -> +0
		return binary.LittleEndian.AppendUint64(append(b, 2), math.Float64bits(f))
	case String:
		b = binary.AppendUvarint(append(b, 4), uint64(len(v.s)))
		return append(b, v.s...)
	case DateTime:
		return binary.LittleEndian.AppendUint64(append(b, 5), v.n)
	case RecordKind:
		b = binary.AppendUvarint(append(b, 6), uint64(len(v.rec.Names)))
		for i, n := range v.rec.Names {
			b = AppendKey(b, Str(n))
			b = AppendKey(b, v.rec.Vals[i])
		}
		return b
	case ArrayKind:
		b = binary.AppendUvarint(append(b, 7), uint64(len(v.arr.Items)))
		for _, it := range v.arr.Items {
			b = AppendKey(b, it)
		}
		return b
	}
	return b
}
