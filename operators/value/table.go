package value

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// ReadTable reads reference rows: one JSON object per line, one JSON
// array of objects, or CSV with a header line (values are strings, as
// Stream Analytics reads CSV).
func ReadTable(data []byte) ([]*Record, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '{' && trimmed[0] != '[' {
		return readCSV(trimmed)
	}
	var vals []Value
	if len(trimmed) > 0 && trimmed[0] == '[' {
		v, err := ParseJSON(string(trimmed))
		if err != nil {
			return nil, err
		}
		vals = v.Array().Items
	} else {
		var err error
		if vals, err = readJSONLines(data); err != nil {
			return nil, err
		}
	}
	rows := make([]*Record, 0, len(vals))
	for i, v := range vals {
		if v.Record() == nil {
			return nil, fmt.Errorf("row %d is not a JSON object", i+1)
		}
		rows = append(rows, v.Record())
	}
	return rows, nil
}

func readCSV(data []byte) ([]*Record, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = 0 // every row as wide as the header
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("CSV header: %w", err)
	}
	var rows []*Record
	for {
		fields, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("CSV: %w", err)
		}
		rec := &Record{Names: header, Vals: make([]Value, len(fields))}
		for i, f := range fields {
			rec.Vals[i] = Str(f)
		}
		rows = append(rows, rec)
	}
}

func readJSONLines(data []byte) ([]Value, error) {
	var out []Value
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		v, err := ParseJSON(string(b))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}
