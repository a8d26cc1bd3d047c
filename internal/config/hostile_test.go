package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseRefusesHostileYAML (issue 13): a job body that refers to itself
// through an alias ended the gateway with a stack overflow, and a few
// hundred bytes of nested aliases ran it out of memory. Both, anchors in
// general, deep nesting and oversized bodies are refused with the line and
// column.
func TestParseRefusesHostileYAML(t *testing.T) {
	laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
		prev = n
	}
	for name, body := range map[string]string{
		"self alias":     "a: &x [*x]",
		"billion laughs": laughs,
		"anchor":         "name: &n job\nquery: SELECT 1 INTO o FROM i\n",
		"deep":           "name: j\nx: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseJob("job.yaml", []byte(body))
			require.ErrorIs(t, err, ErrInvalid)
			require.Contains(t, err.Error(), "line ")
		})
	}
	_, err := ParseJob("job.yaml", []byte("name: j\nquery: '"+strings.Repeat("x", MaxConfigBytes)+"'\n"))
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "at most")
}

// FuzzParseJob: no job body crashes the loader or the validation.
func FuzzParseJob(f *testing.F) {
	f.Add([]byte("name: j\nquery: SELECT v INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("name: j\npolicy: {late_arrival_tolerance: 5s}\n"))
	f.Add([]byte("{\"name\": \"j\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseJob("job.yaml", data)
		_, _ = ParseJob("job.json", data)
		_, _ = ParseJob("job.textproto", data)
	})
}
