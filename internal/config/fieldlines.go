package config

import (
	"bufio"
	"bytes"
	"strings"
)

// EachFieldLine calls each with the 1-based number and the fields of every
// line of a credentials file (admin tokens, MQTT passwords) but blank lines
// and lines starting with #, and stops at its first error.
func EachFieldLine(data []byte, each func(n int, fields []string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := each(n, strings.Fields(line)); err != nil {
			return err
		}
	}
	return sc.Err()
}
