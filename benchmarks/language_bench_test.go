package benchmarks

import (
	"fmt"
	"strings"
	"testing"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
)

const startTicks = 638000000000000000 // an instant in 2022; any fixed one will do

func newExec(tb testing.TB, q string) *exec.Executor {
	tb.Helper()
	p, err := plan.FromSQL(q)
	if err != nil {
		tb.Fatal(err)
	}
	var sink []byte
	ex, err := exec.New(p, exec.Options{Emit: func(_ string, _ int64, rec *value.Record) {
		sink = value.AppendRecordJSON(sink[:0], rec)
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return ex
}

// BenchmarkStreamJoin joins toll entries with exits of the same car within
// 10 minutes (DATEDIFF bound), 2,000 cars in flight, one event each way.
func BenchmarkStreamJoin(b *testing.B) {
	ex := newExec(b, `SELECT en.plate, DATEDIFF(second, en.t, ex.t) AS secs
		FROM Entry en TIMESTAMP BY t JOIN Exit ex TIMESTAMP BY t
		ON en.plate = ex.plate AND DATEDIFF(minute, en, ex) BETWEEN 0 AND 10`)
	const cars = 2000
	// Event i: entry of car i at i*50ms, exit of car i-cars at the same time
	// (100 s later than its entry).
	entries := make([][]byte, 1<<14)
	exits := make([][]byte, 1<<14)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts := startTicks + int64(i)*50*value.TicksPerMillisecond
		k := i & (len(entries) - 1)
		entries[k] = fmt.Appendf(entries[k][:0], `{"plate":"P%d","t":"%s"}`, i, value.FormatTicks(ts))
		if err := ex.Ingest("Entry", entries[k], exec.ArrivalIsEventTime); err != nil {
			b.Fatal(err)
		}
		if i >= cars {
			exits[k] = fmt.Appendf(exits[k][:0], `{"plate":"P%d","t":"%s"}`, i-cars, value.FormatTicks(ts))
			if err := ex.Ingest("Exit", exits[k], exec.ArrivalIsEventTime); err != nil {
				b.Fatal(err)
			}
		}
	}
	ex.Flush()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cars/s")
}

// BenchmarkJoinChain is BenchmarkStreamJoin with a second join in the same
// SELECT: each car's entry and exit, then its payment within 5 minutes of
// the exit (DATEDIFF on the first join's right alias), 2,000 cars in flight.
func BenchmarkJoinChain(b *testing.B) {
	ex := newExec(b, `SELECT en.plate, DATEDIFF(second, en.t, ex.t) AS secs, pay.amount
		FROM Entry en TIMESTAMP BY t
		JOIN Exit ex TIMESTAMP BY t ON en.plate = ex.plate AND DATEDIFF(minute, en, ex) BETWEEN 0 AND 10
		JOIN Payment pay TIMESTAMP BY t ON pay.plate = en.plate AND DATEDIFF(minute, ex, pay) BETWEEN 0 AND 5`)
	const cars = 2000
	// Event i: entry of car i at i*50ms, exit of car i-cars at the same time
	// (100 s after its entry), payment of car i-2*cars (100 s after its exit).
	bufs := [3][][]byte{make([][]byte, 1<<14), make([][]byte, 1<<14), make([][]byte, 1<<14)}
	inputs := [3]string{"Entry", "Exit", "Payment"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts := startTicks + int64(i)*50*value.TicksPerMillisecond
		k := i & (len(bufs[0]) - 1)
		for s := 0; s < 3 && i >= s*cars; s++ {
			bufs[s][k] = fmt.Appendf(bufs[s][k][:0], `{"plate":"P%d","amount":%d,"t":"%s"}`, i-s*cars, i%7, value.FormatTicks(ts))
			if err := ex.Ingest(inputs[s], bufs[s][k], exec.ArrivalIsEventTime); err != nil {
				b.Fatal(err)
			}
		}
	}
	ex.Flush()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cars/s")
}

// BenchmarkLagPartitionBy computes each device's change since its previous
// reading with LAG ... PARTITION BY deviceId over 10,000 devices.
func BenchmarkLagPartitionBy(b *testing.B) {
	ex := newExec(b, `SELECT deviceId, temperature - LAG(temperature) OVER (PARTITION BY deviceId LIMIT DURATION(minute, 1)) AS delta
		FROM EdgeInput`)
	events := payloads(1<<16, 10_000)
	arrival := int64(startTicks)
	b.SetBytes(int64(len(events[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		arrival += 100 * value.TicksPerMicrosecond
		if err := ex.Ingest("EdgeInput", events[i&(len(events)-1)], arrival); err != nil {
			b.Fatal(err)
		}
	}
	ex.Flush()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// stateQueries are the stateful operators whose state must stay bounded by
// their time bounds.
var stateQueries = map[string]string{
	"join": `SELECT a.k, b.v FROM A a TIMESTAMP BY t JOIN B b TIMESTAMP BY t
		ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 30`,
	"left-join": `SELECT a.k, b.v FROM A a TIMESTAMP BY t LEFT JOIN B b TIMESTAMP BY t
		ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 30`,
	"lag":      `SELECT k, LAG(v, 3) OVER (PARTITION BY k LIMIT DURATION(second, 30)) AS p FROM A TIMESTAMP BY t`,
	"sum-over": `SELECT k, SUM(v) OVER (PARTITION BY k LIMIT DURATION(second, 30)) AS s FROM A TIMESTAMP BY t`,
	"hopping":  `SELECT k, AVG(v) AS a, COUNT(DISTINCT v) AS d FROM A TIMESTAMP BY t GROUP BY k, HoppingWindow(second, 60, 10)`,
	"sliding":  `SELECT k, MAX(v) AS m FROM A TIMESTAMP BY t GROUP BY k, SlidingWindow(second, 30)`,
	"session":  `SELECT k, COUNT(*) AS n FROM A TIMESTAMP BY t GROUP BY k, SessionWindow(second, 5, 60)`,
	"anomaly":  `SELECT k, AnomalyDetection_SpikeAndDip(v, 95, 60, 'spikesanddips') OVER (PARTITION BY k LIMIT DURATION(second, 60)) AS a FROM A TIMESTAMP BY t`,
}

// stateSizes feeds 10 minutes of event time (50 events/s on A and on B,
// 200 keys) and returns the snapshot size after each minute.
func stateSizes(tb testing.TB, q string) []int {
	ex := newExec(tb, q)
	var sizes []int
	var buf []byte
	for s := 0; s < 600*50; s++ {
		ts := startTicks + int64(s)*20*value.TicksPerMillisecond
		buf = fmt.Appendf(buf[:0], `{"k":%d,"v":%d,"t":"%s"}`, s%200, (s*7)%13, value.FormatTicks(ts))
		if err := ex.Ingest("A", buf, exec.ArrivalIsEventTime); err != nil {
			tb.Fatal(err)
		}
		if len(ex.Inputs()) > 1 {
			if err := ex.Ingest("B", buf, exec.ArrivalIsEventTime); err != nil {
				tb.Fatal(err)
			}
		}
		if (s+1)%(60*50) == 0 {
			snap, err := ex.Snapshot()
			if err != nil {
				tb.Fatal(err)
			}
			sizes = append(sizes, len(snap))
		}
	}
	return sizes
}

// BenchmarkStateSize reports the state size (snapshot bytes) of each
// stateful operator after 2 and after 10 minutes of event time: flat after
// the first time bound. Run with -benchtime 1x.
func BenchmarkStateSize(b *testing.B) {
	for name, q := range stateQueries {
		b.Run("op="+name, func(b *testing.B) {
			var sizes []int
			for i := 0; i < b.N; i++ {
				sizes = stateSizes(b, q)
			}
			b.ReportMetric(float64(sizes[1]), "bytes@2min")
			b.ReportMetric(float64(sizes[9]), "bytes@10min")
		})
	}
}

// BenchmarkPatIndexHostile: PATINDEX('%a%b', x) over a 60,000-character
// value with no b, the input that took 6.2 s per event when every start
// position was tried (issue 13). Reported per event.
func BenchmarkPatIndexHostile(b *testing.B) {
	ex := newExec(b, `SELECT PATINDEX('%a%b', s) AS p FROM Input`)
	payload := fmt.Appendf(nil, `{"s":"%s"}`, strings.Repeat("a", 60000))
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ex.Ingest("Input", payload, int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	ex.Flush()
}

// BenchmarkStateBytes: one walk of the state estimate that job memory
// budgets take every 2 s of event time per partition, over 100,000
// groups of the seed query's per-device aggregate (issue 13). Divide by
// the events of 2 s for the cost per event.
func BenchmarkStateBytes(b *testing.B) {
	ex := newExec(b, `SELECT deviceId, AVG(temperature) AS avgTemp, MAX(temperature) AS maxTemp, COUNT(*) AS n
		INTO agg FROM Input GROUP BY deviceId, TumblingWindow(hour, 1)`)
	for i := 0; i < 100000; i++ {
		if err := ex.Ingest("Input", fmt.Appendf(nil, `{"deviceId":"dev-%d","temperature":%d}`, i, i%120), startTicks+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		n = ex.StateBytes()
	}
	b.ReportMetric(float64(n)/1e6, "MB-state")
}
