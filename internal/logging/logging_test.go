package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

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
