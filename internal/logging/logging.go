// Package logging builds the gateway's one slog.Logger from the command
// line's --log-format and --log-level, so that every part (the gateway,
// protoactor, the embedded broker, Pebble, memberlist) writes through the
// same handler: one format, one level, no terminal colour codes in files.
package logging

import (
	"context"
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

// Rewrite wraps h so that fix sees every record before h does: it may
// change the record's message or level (a library's routine line logged
// as a warning, an empty message), or drop it by returning false. A
// record fix demotes below h's level is dropped, so demoting is how a
// library's noise goes to debug.
func Rewrite(h slog.Handler, fix func(*slog.Record) bool) slog.Handler {
	return rewriteHandler{h: h, fix: fix}
}

type rewriteHandler struct {
	h   slog.Handler
	fix func(*slog.Record) bool
}

// Enabled asks h at the record's own level: a fix can lower a level but
// not raise a record h would not take.
func (r rewriteHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r rewriteHandler) Handle(ctx context.Context, rec slog.Record) error {
	if !r.fix(&rec) || !r.h.Enabled(ctx, rec.Level) {
		return nil
	}
	return r.h.Handle(ctx, rec)
}

func (r rewriteHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return rewriteHandler{h: r.h.WithAttrs(as), fix: r.fix}
}

func (r rewriteHandler) WithGroup(name string) slog.Handler {
	return rewriteHandler{h: r.h.WithGroup(name), fix: r.fix}
}

// Demote is a Rewrite fix that logs the records with one of msgs as their
// message at debug (lines a library logs at info on every start, stop or
// connection).
func Demote(msgs ...string) func(*slog.Record) bool {
	set := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		set[m] = true
	}
	return func(r *slog.Record) bool {
		if set[r.Message] {
			r.Level = min(r.Level, slog.LevelDebug)
		}
		return true
	}
}

// ErrorAttr is the error in a record's "error" attribute (nil if none),
// for a fix that decides by it.
func ErrorAttr(r slog.Record) error {
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			err, _ = a.Value.Any().(error)
			return false
		}
		return true
	})
	return err
}
