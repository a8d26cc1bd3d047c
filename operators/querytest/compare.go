package querytest

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/millstream/millstream/operators/value"
)

// ReadJSONLines parses one JSON value per non-blank line.
func ReadJSONLines(data []byte) ([]value.Value, error) {
	var out []value.Value
	err := eachLine(data, func(line int, b []byte) error {
		v, err := value.ParseJSON(string(b))
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// eachLine calls fn with every non-blank line (trimmed, numbered from 1).
// The slice is only valid during the call.
func eachLine(data []byte, fn func(line int, b []byte) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		if b := bytes.TrimSpace(sc.Bytes()); len(b) > 0 {
			if err := fn(line, b); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

// Diff is the difference between expected and produced rows.
type Diff struct {
	Missing    []value.Value // expected, not produced
	Unexpected []value.Value // produced, not expected
	OrderErr   string        // with ordered comparison: first position that differs
}

// Empty reports whether the rows matched.
func (d *Diff) Empty() bool { return len(d.Missing) == 0 && len(d.Unexpected) == 0 && d.OrderErr == "" }

// String renders the diff for people: one row per line.
func (d *Diff) String() string {
	var b strings.Builder
	if d.OrderErr != "" {
		b.WriteString("  " + d.OrderErr + "\n")
	}
	for _, v := range d.Missing {
		b.WriteString("  - missing:    " + string(value.AppendJSON(nil, v)) + "\n")
	}
	for _, v := range d.Unexpected {
		b.WriteString("  + unexpected: " + string(value.AppendJSON(nil, v)) + "\n")
	}
	return b.String()
}

// CompareRows compares expected rows with produced ones.
func CompareRows(expected []value.Value, got []*value.Record, o CompareOptions) *Diff {
	d := &Diff{}
	actual := make([]value.Value, len(got))
	for i, r := range got {
		actual[i] = value.RecordValue(r)
	}
	if o.Ordered {
		for i := 0; i < len(expected) && i < len(actual); i++ {
			if !o.equal(expected[i], actual[i], "") {
				d.OrderErr = fmt.Sprintf("row %d differs: expected %s, got %s", i+1, value.AppendJSON(nil, expected[i]), value.AppendJSON(nil, actual[i]))
				break
			}
		}
	}
	used := make([]bool, len(actual))
	for _, e := range expected {
		found := false
		for j, a := range actual {
			if !used[j] && o.equal(e, a, "") {
				used[j], found = true, true
				break
			}
		}
		if !found {
			d.Missing = append(d.Missing, e)
		}
	}
	for j, a := range actual {
		if !used[j] {
			d.Unexpected = append(d.Unexpected, a)
		}
	}
	return d
}

func (o CompareOptions) equal(e, a value.Value, field string) bool {
	if e.IsNull() || a.IsNull() {
		return e.IsNull() && a.IsNull()
	}
	if fe, ok := e.AsFloat(); ok && e.IsNumeric() {
		fa, ok := a.AsFloat()
		if !ok || !a.IsNumeric() {
			return false
		}
		return closeEnough(fe, fa, o.FloatRelTol)
	}
	if o.DatetimeSemantic && (e.Kind() == value.String || e.Kind() == value.DateTime) && (a.Kind() == value.String || a.Kind() == value.DateTime) {
		te, errE := ticksOf(e)
		ta, errA := ticksOf(a)
		if errE == nil && errA == nil {
			return te == ta
		}
	}
	if e.Kind() == value.DateTime && a.Kind() == value.String || e.Kind() == value.String && a.Kind() == value.DateTime {
		return false
	}
	switch e.Kind() {
	case value.RecordKind:
		return o.equalRecords(e.Record(), a.Record())
	case value.ArrayKind:
		ea, aa := e.Array(), a.Array()
		if aa == nil || len(ea.Items) != len(aa.Items) {
			return false
		}
		if o.unorderedArray(field) {
			used := make([]bool, len(aa.Items))
			for _, x := range ea.Items {
				ok := false
				for j, y := range aa.Items {
					if !used[j] && o.equal(x, y, "") {
						used[j], ok = true, true
						break
					}
				}
				if !ok {
					return false
				}
			}
			return true
		}
		for i := range ea.Items {
			if !o.equal(ea.Items[i], aa.Items[i], "") {
				return false
			}
		}
		return true
	}
	return value.Equal(e, a)
}

func ticksOf(v value.Value) (int64, error) {
	if v.Kind() == value.DateTime {
		return v.Ticks(), nil
	}
	return value.ParseTime(v.Str())
}

func (o CompareOptions) unorderedArray(field string) bool {
	for _, f := range o.UnorderedArrays {
		if strings.EqualFold(f, field) {
			return true
		}
	}
	return false
}

func (o CompareOptions) lookup(r *value.Record, name string) (value.Value, bool) {
	for i, n := range r.Names {
		if n == name {
			return r.Vals[i], true
		}
	}
	if o.CaseInsensitiveNames {
		return r.Get(name)
	}
	return value.Value{}, false
}

func (o CompareOptions) equalRecords(e, a *value.Record) bool {
	if a == nil {
		return false
	}
	for i, n := range e.Names {
		av, ok := o.lookup(a, n)
		if !ok && !(o.NullEqualsMissing && e.Vals[i].IsNull()) {
			return false
		}
		if !o.equal(e.Vals[i], av, n) {
			return false
		}
	}
	for i, n := range a.Names {
		if _, ok := o.lookup(e, n); !ok && !(o.NullEqualsMissing && a.Vals[i].IsNull()) {
			return false
		}
	}
	return true
}

func closeEnough(a, b, tol float64) bool {
	if a == b {
		return true
	}
	if tol <= 0 {
		tol = 1e-9
	}
	return math.Abs(a-b) <= tol*math.Max(math.Abs(a), math.Abs(b))
}
