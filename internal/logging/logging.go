// Package logging builds the gateway's one slog.Logger from the command
// line's --log-format and --log-level, so that every part (the gateway,
// protoactor, the embedded broker, Pebble, memberlist) writes through the
// same handler: one format, one level, no terminal colour codes in files.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats and levels the flags accept.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w in format ("text" or "json", default
// text) at level ("debug", "info", "warn" or "error", default info).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Component is l with a component attribute, for a library whose lines
// should say where they come from (component=mqtt, component=actor).
func Component(l *slog.Logger, name string) *slog.Logger {
	return l.With("component", name)
}
