package exec

import (
	"fmt"
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// schema is a compiled CREATE TABLE: every declared column must be present
// and convert to its type, or the row is rejected (the reference drops
// such rows; here they are counted and dead-lettered). Undeclared fields
// pass through unchanged.
type schema struct {
	cols []schemaColumn
}

type schemaColumn struct {
	name, typ string
}

func schemaFor(p *pb.Plan, input string) *schema {
	for _, s := range p.Schemas {
		if strings.EqualFold(s.Input, input) {
			sc := &schema{}
			for _, c := range s.Columns {
				sc.cols = append(sc.cols, schemaColumn{name: c.Name, typ: c.Type})
			}
			return sc
		}
	}
	return nil
}

// apply converts rec's declared columns in place.
func (s *schema) apply(rec *value.Record) error {
	if s == nil {
		return nil
	}
	for i := range s.cols {
		c := &s.cols[i]
		j := rec.Index(c.name)
		if j < 0 {
			return fmt.Errorf("CREATE TABLE: column %s is missing", c.name)
		}
		v := rec.Vals[j]
		if v.IsNull() {
			continue
		}
		conv, ok := expr.Convert(v, c.typ)
		if !ok {
			return fmt.Errorf("CREATE TABLE: column %s: %s %s is not a %s", c.name, v.Kind(), v, c.typ)
		}
		rec.Vals[j] = conv
	}
	return nil
}

func (s *schema) columns() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.cols))
	for i, c := range s.cols {
		out[i] = c.name
	}
	return out
}
