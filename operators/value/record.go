package value

import "strings"

// Record is a JSON object: names and values in input order. Lookups are
// case-insensitive (V3). A record may share its Names slice with other
// records of the same projection; never append to Names in place.
type Record struct {
	Names []string
	Vals  []Value
}

// Len returns the number of fields.
func (r *Record) Len() int { return len(r.Names) }

// Get returns the value of the field name (case-insensitive), or NULL.
func (r *Record) Get(name string) (Value, bool) {
	for i, n := range r.Names {
		if n == name {
			return r.Vals[i], true
		}
	}
	for i, n := range r.Names {
		if strings.EqualFold(n, name) {
			return r.Vals[i], true
		}
	}
	return Value{}, false
}

// GetHint is Get with a position hint the caller keeps between calls: rows
// of one stream usually have their fields in the same order, so the hint
// makes the lookup O(1) on the hot path.
func (r *Record) GetHint(name string, hint *int) Value {
	if h := *hint; h < len(r.Names) && (r.Names[h] == name || strings.EqualFold(r.Names[h], name)) {
		return r.Vals[h]
	}
	for i, n := range r.Names {
		if n == name || strings.EqualFold(n, name) {
			*hint = i
			return r.Vals[i]
		}
	}
	return Value{}
}

// Index returns the position of name, or -1.
func (r *Record) Index(name string) int {
	for i, n := range r.Names {
		if strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// Set appends or replaces a field.
func (r *Record) Set(name string, v Value) {
	if i := r.Index(name); i >= 0 {
		r.Vals[i] = v
		return
	}
	r.Names = append(r.Names, name)
	r.Vals = append(r.Vals, v)
}

// Clone deep-copies the record.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := &Record{Names: make([]string, len(r.Names)), Vals: make([]Value, len(r.Vals))}
	for i := range r.Names {
		c.Names[i] = strings.Clone(r.Names[i])
		c.Vals[i] = r.Vals[i].Clone()
	}
	return c
}

// Copy returns a record with its own Names and Vals slices sharing the
// (immutable) values: what a receiver that keeps a borrowed row needs.
func (r *Record) Copy() *Record {
	return &Record{Names: append([]string(nil), r.Names...), Vals: append([]Value(nil), r.Vals...)}
}
