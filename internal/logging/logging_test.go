package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewFormatsAndLevels(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, "json", "warn")
	require.NoError(t, err)
	l.Info("hidden")
	Component(l, "mqtt").Warn("shown", "client", "press-1")
	var line map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &line))
	require.Equal(t, "shown", line["msg"])
	require.Equal(t, "mqtt", line["component"])
	require.NotContains(t, b.String(), "hidden")

	b.Reset()
	l, err = New(&b, "", "")
	require.NoError(t, err)
	l.Info("plain")
	require.True(t, strings.HasPrefix(b.String(), "time="), b.String())
	require.NotContains(t, b.String(), "\x1b[", "no terminal colour codes")

	_, err = New(&b, "xml", "")
	require.ErrorContains(t, err, `log format "xml"`)
	_, err = New(&b, "json", "loud")
	require.ErrorContains(t, err, `log level "loud"`)
}

// TestRewrite: a fix changes a record's message and level before the
// handler sees it; a record demoted below the handler's level, or dropped,
// is not written; attributes added with With stay.
func TestRewrite(t *testing.T) {
	var b bytes.Buffer
	base, err := New(&b, "json", "info")
	require.NoError(t, err)
	l := slog.New(Rewrite(base.Handler(), func(r *slog.Record) bool {
		switch {
		case r.Message == "":
			r.Message = "unnamed"
			r.Level = slog.LevelInfo
		case r.Message == "drop me":
			return false
		}
		return Demote("noise")(r)
	})).With("component", "lib")
	l.Warn("", "error", io.EOF)
	l.Info("noise")
	l.Warn("drop me")
	l.Warn("kept")
	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(s), &m))
		lines = append(lines, m)
	}
	require.Len(t, lines, 2, b.String())
	require.Equal(t, "unnamed", lines[0]["msg"])
	require.Equal(t, "INFO", lines[0]["level"])
	require.Equal(t, "EOF", lines[0]["error"])
	require.Equal(t, "lib", lines[0]["component"])
	require.Equal(t, "kept", lines[1]["msg"])
	require.Equal(t, "WARN", lines[1]["level"])

	r := slog.NewRecord(time.Now(), slog.LevelWarn, "", 0)
	r.AddAttrs(slog.Any("error", io.EOF))
	require.Equal(t, io.EOF, ErrorAttr(r))
	require.NoError(t, ErrorAttr(slog.NewRecord(time.Now(), slog.LevelWarn, "", 0)))
}
