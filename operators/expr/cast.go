package expr

import (
	"math"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/value"
)

// castTo converts v to the named type. With try, a failed conversion gives
// NULL; without, it is a runtime error.
func castTo(c *Ctx, v value.Value, typ string, try bool) value.Value {
	if v.IsNull() {
		return v
	}
	r, ok := convert(v, typ)
	if ok {
		return r
	}
	if try {
		return value.Value{}
	}
	return c.failf("cannot CAST %s %s AS %s", v.Kind(), v, typ)
}

// Convert converts a non-NULL value to a type name (as CAST does) and
// reports whether it could.
func Convert(v value.Value, typ string) (value.Value, bool) { return convert(v, typ) }

func convert(v value.Value, typ string) (value.Value, bool) {
	switch typ {
	case "bigint":
		switch v.Kind() {
		case value.BigInt:
			return v, true
		case value.Bit:
			return value.Int(v.Int()), true
		case value.Float:
			f := v.Float()
			if math.IsNaN(f) || math.Abs(f) >= 9.2e18 {
				return value.Value{}, false
			}
			return value.Int(int64(f)), true
		case value.String:
			s := strings.TrimSpace(v.Str())
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return value.Int(i), true
			}
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && math.Abs(f) < 9.2e18 {
				return value.Int(int64(f)), true
			}
		}
	case "float":
		switch v.Kind() {
		case value.Float:
			return v, true
		case value.BigInt, value.Bit:
			return value.FloatValue(float64(v.Int())), true
		case value.String:
			f, err := strconv.ParseFloat(strings.TrimSpace(v.Str()), 64)
			if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return value.FloatValue(f), true
			}
		}
	case "nvarchar(max)":
		return value.Str(ToText(v)), true
	case "datetime":
		switch v.Kind() {
		case value.DateTime:
			return v, true
		case value.String:
			if t, err := value.ParseTime(strings.TrimSpace(v.Str())); err == nil {
				return value.Time(t), true
			}
		}
	case "bit":
		switch v.Kind() {
		case value.Bit:
			return v, true
		case value.BigInt:
			return value.BitValue(v.Int() != 0), true
		case value.Float:
			return value.BitValue(v.Float() != 0), true
		case value.String:
			switch strings.ToLower(strings.TrimSpace(v.Str())) {
			case "true", "1":
				return value.BitValue(true), true
			case "false", "0":
				return value.BitValue(false), true
			}
		}
	case "record":
		if v.Kind() == value.RecordKind {
			return v, true
		}
	case "array":
		if v.Kind() == value.ArrayKind {
			return v, true
		}
	}
	return value.Value{}, false
}

// ToTime reads a datetime argument: a datetime, or an ISO-8601 string.
func ToTime(c *Ctx, v value.Value, what string) (int64, bool) {
	switch v.Kind() {
	case value.DateTime:
		return v.Ticks(), true
	case value.String:
		t, err := value.ParseTime(v.Str())
		if err != nil {
			c.failf("%s: %v", what, err)
			return 0, false
		}
		return t, true
	}
	typeErr(c, what, v)
	return 0, false
}
