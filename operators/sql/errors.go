package sql

import (
	"fmt"
	"strings"
)

// Error is a syntax error at a position of the query.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sql: %s: %s", e.Pos, e.Msg)
}

// Excerpt returns the line of src the error is on and a caret under its
// column, for showing an error in context (tests and tools that print
// errors of a query they hold).
func (e *Error) Excerpt(src string) string {
	lines := strings.Split(src, "\n")
	if e.Pos.Line < 1 || e.Pos.Line > len(lines) || e.Pos.Col < 1 {
		return ""
	}
	return lines[e.Pos.Line-1] + "\n" + strings.Repeat(" ", e.Pos.Col-1) + "^\n"
}
