package benchmarks

import (
	"testing"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// BenchmarkUDFCall runs a JavaScript UDF on every event (issue 17 item 7):
// decoding, the call into goja with its time limit and global check, and
// the result's conversion, against the same query with a built-in
// expression (call=builtin) as the baseline.
func BenchmarkUDFCall(b *testing.B) {
	for _, c := range []struct{ name, query string }{
		{"call=builtin", "SELECT deviceId, (temperature - 32) * 5 / 9 AS celsius INTO o FROM EdgeInput"},
		{"call=udf", "SELECT deviceId, udf.celsius(temperature) AS celsius INTO o FROM EdgeInput"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := plan.FromSQL(c.query)
			if err != nil {
				b.Fatal(err)
			}
			p.Functions = []*pb.Function{{Name: "celsius", Code: "function main(f) { return (f - 32) * 5 / 9; }"}}
			var rows int
			ex, err := exec.New(p, exec.Options{Emit: func(string, int64, *value.Record) { rows++ }})
			if err != nil {
				b.Fatal(err)
			}
			events := payloads(1<<12, 100)
			arrival := value.FromTime(mustUnix(1_767_225_600))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				arrival += value.TicksPerMicrosecond
				if err := ex.Ingest("EdgeInput", events[i&(len(events)-1)], arrival); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if rows != b.N {
				b.Fatalf("%d rows for %d events", rows, b.N)
			}
		})
	}
}
