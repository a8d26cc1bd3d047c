package value

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrBadJSON is wrapped by every decoding error.
var ErrBadJSON = errors.New("value: invalid JSON")

// DefaultMaxDepth bounds nesting of decoded objects and arrays.
const DefaultMaxDepth = 64

// Decoder decodes JSON events into records. It is not safe for concurrent
// use.
//
// The record Decode returns is reused by the next call: a caller that keeps
// it (or a value taken from it) past that call must Clone it. Strings in the
// record are slices of one copy of the payload made per call, so keeping a
// cloned record never keeps the caller's buffer alive.
type Decoder struct {
	// MaxDepth bounds nesting; 0 means DefaultMaxDepth.
	MaxDepth int
	// Fields, when not nil, lists the only top-level fields to keep
	// (case-insensitive): the others are checked for syntax and skipped
	// without being converted. The executor sets it to the fields a query
	// reads (projection pushdown).
	Fields []string
	top    Record
}

// Decode parses one JSON object.
func (d *Decoder) Decode(payload []byte) (*Record, error) {
	p := jsonParser{s: string(payload), maxDepth: d.MaxDepth, fields: d.Fields, filter: d.Fields != nil}
	if p.maxDepth <= 0 {
		p.maxDepth = DefaultMaxDepth
	}
	if !utf8.ValidString(p.s) {
		return nil, p.errorf("invalid UTF-8")
	}
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, p.errorf("expected a JSON object")
	}
	d.top.Names = d.top.Names[:0]
	d.top.Vals = d.top.Vals[:0]
	if err := p.object(&d.top, 1); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected data after the object")
	}
	return &d.top, nil
}

// ParseJSON parses any JSON value into a freshly allocated Value.
func ParseJSON(s string) (Value, error) {
	p := jsonParser{s: s, maxDepth: DefaultMaxDepth}
	if !utf8.ValidString(s) {
		return Value{}, p.errorf("invalid UTF-8")
	}
	p.skipSpace()
	v, err := p.value(1)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return Value{}, p.errorf("unexpected data after the value")
	}
	return v, nil
}

type jsonParser struct {
	s        string
	i        int
	maxDepth int
	fields   []string
	filter   bool
}

func (p *jsonParser) keep(name string) bool {
	for _, f := range p.fields {
		if len(f) == len(name) && (f == name || strings.EqualFold(f, name)) {
			return true
		}
	}
	return false
}

// skip checks the syntax of a value and moves past it without building it.
func (p *jsonParser) skip(depth int) error {
	if p.i < len(p.s) && (p.s[p.i] == '{' || p.s[p.i] == '[') {
		if depth+1 > p.maxDepth {
			return p.errorf("nesting deeper than %d", p.maxDepth)
		}
		closer := byte('}')
		isObj := p.s[p.i] == '{'
		if !isObj {
			closer = ']'
		}
		p.i++
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == closer {
			p.i++
			return nil
		}
		for {
			p.skipSpace()
			if isObj {
				if p.i >= len(p.s) || p.s[p.i] != '"' {
					return p.errorf("expected a field name in quotes")
				}
				if _, err := p.str(); err != nil {
					return err
				}
				p.skipSpace()
				if p.i >= len(p.s) || p.s[p.i] != ':' {
					return p.errorf("expected ':' after field name")
				}
				p.i++
				p.skipSpace()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.i >= len(p.s) {
				return p.errorf("unexpected end of input")
			}
			switch p.s[p.i] {
			case ',':
				p.i++
			case closer:
				p.i++
				return nil
			default:
				return p.errorf("expected ',' or '%c'", closer)
			}
		}
	}
	_, err := p.value(depth)
	return err
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBadJSON, fmt.Sprintf(format, args...), p.i)
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses {...} starting at '{' into r.
func (p *jsonParser) object(r *Record, depth int) error {
	if depth > p.maxDepth {
		return p.errorf("nesting deeper than %d", p.maxDepth)
	}
	p.i++ // '{'
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return p.errorf("expected a field name in quotes")
		}
		name, err := p.str()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return p.errorf("expected ':' after field name")
		}
		p.i++
		p.skipSpace()
		if p.filter && depth == 1 && !p.keep(name) {
			if err := p.skip(depth); err != nil {
				return err
			}
		} else {
			v, err := p.value(depth)
			if err != nil {
				return err
			}
			r.Names = append(r.Names, name)
			r.Vals = append(r.Vals, v)
		}
		p.skipSpace()
		if p.i >= len(p.s) {
			return p.errorf("unexpected end of input in object")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.errorf("expected ',' or '}' in object")
		}
	}
}

func (p *jsonParser) value(depth int) (Value, error) {
	if p.i >= len(p.s) {
		return Value{}, p.errorf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '"':
		s, err := p.str()
		return Str(s), err
	case c == '{':
		r := &Record{}
		if err := p.object(r, depth+1); err != nil {
			return Value{}, err
		}
		return RecordValue(r), nil
	case c == '[':
		return p.array(depth + 1)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case p.lit("true"):
		return BitValue(true), nil
	case p.lit("false"):
		return BitValue(false), nil
	case p.lit("null"):
		return Value{}, nil
	}
	return Value{}, p.errorf("unexpected character %q", p.s[p.i])
}

func (p *jsonParser) lit(w string) bool {
	if len(p.s)-p.i >= len(w) && p.s[p.i:p.i+len(w)] == w {
		p.i += len(w)
		return true
	}
	return false
}

func (p *jsonParser) array(depth int) (Value, error) {
	if depth > p.maxDepth {
		return Value{}, p.errorf("nesting deeper than %d", p.maxDepth)
	}
	p.i++ // '['
	a := &Array{}
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return ArrayValue(a), nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		a.Items = append(a.Items, v)
		p.skipSpace()
		if p.i >= len(p.s) {
			return Value{}, p.errorf("unexpected end of input in array")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return ArrayValue(a), nil
		default:
			return Value{}, p.errorf("expected ',' or ']' in array")
		}
	}
}

// number parses a JSON number. Integers become bigint (float when they
// overflow), fractions float. Plain decimals of up to 15 digits take a fast
// path: the mantissa is accumulated while scanning and divided once by an
// exact power of ten (Clinger's fast path), which gives the same correctly
// rounded result as strconv.
func (p *jsonParser) number() (Value, error) {
	start := p.i
	neg := p.s[p.i] == '-'
	if neg {
		p.i++
	}
	var mant uint64
	nd, frac := 0, 0
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		mant = mant*10 + uint64(p.s[p.i]-'0')
		p.i++
	}
	nd = p.i - digits
	if nd == 0 || (p.s[digits] == '0' && nd > 1) {
		return Value{}, p.errorf("invalid number")
	}
	isFloat, hasExp := false, false
	if p.i < len(p.s) && p.s[p.i] == '.' {
		isFloat = true
		p.i++
		d := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			mant = mant*10 + uint64(p.s[p.i]-'0')
			p.i++
		}
		frac = p.i - d
		if frac == 0 {
			return Value{}, p.errorf("invalid number")
		}
		nd += frac
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		isFloat, hasExp = true, true
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		d := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == d {
			return Value{}, p.errorf("invalid number")
		}
	}
	if nd <= 15 && !hasExp {
		if !isFloat {
			if neg {
				return Int(-int64(mant)), nil
			}
			return Int(int64(mant)), nil
		}
		f := float64(mant) / pow10[frac]
		if neg {
			f = -f
		}
		return FloatValue(f), nil
	}
	text := p.s[start:p.i]
	if !isFloat {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return Int(n), nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return Value{}, p.errorf("invalid number")
	}
	if math.IsInf(f, 0) {
		return Value{}, p.errorf("number out of range")
	}
	return FloatValue(f), nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// str parses a string starting at '"'. Strings without escapes are slices
// of the input.
func (p *jsonParser) str() (string, error) {
	p.i++
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '"' {
			s := p.s[start:p.i]
			p.i++
			return s, nil
		}
		if c == '\\' {
			return p.strSlow(start)
		}
		if c < 0x20 {
			return "", p.errorf("control character in string")
		}
		p.i++
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) strSlow(start int) (string, error) {
	b := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(b) {
				return "", p.errorf("invalid UTF-8 in string")
			}
			return string(b), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.s) {
			break
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
					p.i += 2
					r2, ok := p.hex4()
					if !ok {
						return "", p.errorf("invalid \\u escape")
					}
					r = utf16.DecodeRune(r, r2)
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", p.errorf("invalid escape \\%c", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for j := 0; j < 4; j++ {
		c := p.s[p.i+j]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// AppendJSON appends v as JSON. Datetimes are written as ISO-8601 strings,
// bits as booleans, NaN and infinities as null.
func AppendJSON(b []byte, v Value) []byte {
	switch v.k {
	case Null:
		return append(b, "null"...)
	case Bit:
		if v.n != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case BigInt:
		return strconv.AppendInt(b, int64(v.n), 10)
	case Float:
		return AppendFloat(b, v.Float())
	case String:
		return AppendString(b, v.s)
	case DateTime:
		b = append(b, '"')
		b = AppendTicks(b, int64(v.n))
		return append(b, '"')
	case RecordKind:
		return AppendRecordJSON(b, v.rec)
	case ArrayKind:
		b = append(b, '[')
		for i, it := range v.arr.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSON(b, it)
		}
		return append(b, ']')
	}
	return b
}

// AppendRecordJSON appends r as a JSON object.
func AppendRecordJSON(b []byte, r *Record) []byte {
	b = append(b, '{')
	for i, n := range r.Names {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, n)
		b = append(b, ':')
		b = AppendJSON(b, r.Vals[i])
	}
	return append(b, '}')
}

// AppendFloat writes a float the way Stream Analytics does: integral values
// keep a ".0" so readers still see a float.
func AppendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, ".0"...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
