package querytest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// OutputReport is the comparison of one output.
type OutputReport struct {
	Output   string
	Expected int
	Got      int
	Diff     *Diff
}

// Report is the outcome of one case.
type Report struct {
	Case    *Case
	Err     error // the query failed to plan or run
	Outputs []OutputReport
	Result  *Result
}

// Passed reports whether every checked output matched.
func (r *Report) Passed() bool {
	if r.Err != nil {
		return false
	}
	for _, o := range r.Outputs {
		if !o.Diff.Empty() {
			return false
		}
	}
	return true
}

// String renders the report: a PASS/FAIL line and, on failure, the rows.
func (r *Report) String() string {
	var b strings.Builder
	if r.Passed() {
		fmt.Fprintf(&b, "PASS %s\n", r.Case.Name)
		return b.String()
	}
	fmt.Fprintf(&b, "FAIL %s\n", r.Case.Name)
	if r.Err != nil {
		fmt.Fprintf(&b, "  error: %v\n", r.Err)
		return b.String()
	}
	for _, o := range r.Outputs {
		if o.Diff.Empty() {
			continue
		}
		fmt.Fprintf(&b, "  output %s: expected %d rows, got %d\n%s", o.Output, o.Expected, o.Got, o.Diff)
	}
	return b.String()
}

// Check runs the case and compares every expected output.
func (c *Case) Check() *Report {
	rep := &Report{Case: c}
	res, err := c.Run()
	if err != nil {
		rep.Err = err
		return rep
	}
	rep.Result = res
	names := make([]string, 0, len(c.Outputs))
	for n := range c.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		file := c.Outputs[name]
		if !filepath.IsAbs(file) {
			file = filepath.Join(c.Dir, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			rep.Err = fmt.Errorf("querytest: %w", err)
			return rep
		}
		expected, err := ReadJSONLines(data)
		if err != nil {
			rep.Err = fmt.Errorf("querytest: %s: %w", c.Outputs[name], err)
			return rep
		}
		key := strings.ToLower(name)
		if key == "" {
			if len(res.Outputs) != 1 {
				rep.Err = errors.New("querytest: expected.jsonl needs a query with one output; name the file expected-<Output>.jsonl")
				return rep
			}
			for k := range res.Outputs {
				key = k
			}
		}
		got, ok := res.Outputs[key]
		if !ok {
			rep.Err = fmt.Errorf("querytest: the query has no output %q", name)
			return rep
		}
		rep.Outputs = append(rep.Outputs, OutputReport{Output: name, Expected: len(expected), Got: len(got), Diff: CompareRows(expected, got, c.Compare)})
	}
	return rep
}
