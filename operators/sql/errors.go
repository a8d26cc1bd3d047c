package sql

import "fmt"

// Error is a syntax error at a position of the query.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sql: %s: %s", e.Pos, e.Msg)
}
