package testutil

import (
	"regexp"
	"strconv"
	"testing"
)

// SeriesValue is the value of the series written exactly as series (name
// and labels, in the order Prometheus' text format sorts them) in a
// /metrics body, or -1 when the body has no such series.
func SeriesValue(t testing.TB, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("series %s: %v", series, err)
	}
	return v
}
