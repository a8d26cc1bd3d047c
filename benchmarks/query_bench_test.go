package benchmarks

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
)

// edgeQuery is Step 2 of seed document 000: a filter, then per-device
// AVG, MAX and COUNT(*) over 30-second tumbling windows.
const edgeQuery = `
WITH FilteredData AS (
    SELECT deviceId, temperature, humidity, System.Timestamp() AS timestamp
    FROM EdgeInput
    WHERE temperature > 70
),
Alerts AS (
    SELECT deviceId, AVG(temperature) AS avgTemp, MAX(temperature) AS maxTemp,
           COUNT(*) AS readings, System.Timestamp() AS windowEnd
    FROM FilteredData
    GROUP BY deviceId, TumblingWindow(second, 30)
    HAVING AVG(temperature) > 80
)
SELECT * INTO CloudOutput FROM Alerts
`

// payloads builds n telemetry events of about 150 bytes from `devices`
// devices; temperatures straddle the filter so both branches run.
func payloads(n, devices int) [][]byte {
	rng := rand.New(rand.NewSource(1))
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"deviceId":"device-%05d","temperature":%.2f,"humidity":%.1f,"pressure":%.1f,"vibration":%.4f,"status":"running","seq":%d}`,
			i%devices, 60+rng.Float64()*35, 30+rng.Float64()*30, 990+rng.Float64()*40, rng.Float64()/10, i)
	}
	return out
}

func BenchmarkEdgeQuery(b *testing.B) {
	for _, withLocal := range []bool{false, true} {
		q := edgeQuery
		name := "outputs=alerts"
		if withLocal {
			q += "\nSELECT * INTO LocalOutput FROM FilteredData"
			name = "outputs=alerts+local"
		}
		b.Run(fmt.Sprintf("devices=10k/%s", name), func(b *testing.B) {
			p, err := plan.FromSQL(q)
			if err != nil {
				b.Fatal(err)
			}
			var rows int
			var sink []byte
			ex, err := exec.New(p, exec.Options{Emit: func(_ string, _ int64, rec *value.Record) {
				rows++
				sink = value.AppendRecordJSON(sink[:0], rec) // what an output would do
			}})
			if err != nil {
				b.Fatal(err)
			}
			events := payloads(1<<16, 10_000)
			var bytes int
			for _, e := range events {
				bytes += len(e)
			}
			// 10,000 devices at one message a second each: 100 µs apart.
			arrival := value.FromTime(mustUnix(1_767_225_600))
			step := 100 * value.TicksPerMicrosecond
			b.SetBytes(int64(bytes / len(events)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				arrival += step
				if err := ex.Ingest("EdgeInput", events[i&(len(events)-1)], arrival); err != nil {
					b.Fatal(err)
				}
			}
			ex.Flush()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if c := ex.Counters(); c.DeadLettered != 0 || c.EventsIn != uint64(b.N) {
				b.Fatalf("counters %+v", c)
			}
			_ = rows
		})
	}
}

// BenchmarkGlobalJobSources is the cost of the merged watermark (A6): a
// global aggregate with event time fed round-robin from 64 partitions
// through IngestFrom, against the same events through Ingest.
func BenchmarkGlobalJobSources(b *testing.B) {
	const query = `SELECT COUNT(*) AS readings, AVG(temperature) AS avgTemp FROM readings TIMESTAMP BY eventTime
GROUP BY TumblingWindow(second, 30)`
	start := mustUnix(1_767_225_600)
	events := make([][]byte, 1<<16)
	for i := range events {
		t := start.Add(time.Duration(i) * 100 * time.Microsecond)
		events[i] = fmt.Appendf(nil, `{"deviceId":"device-%05d","temperature":%d,"eventTime":%q}`, i%10_000, 60+i%40, t.Format(time.RFC3339Nano))
	}
	for _, sources := range []int{0, 64} {
		b.Run(fmt.Sprintf("sources=%d", sources), func(b *testing.B) {
			p, err := plan.FromSQL(query)
			if err != nil {
				b.Fatal(err)
			}
			ex, err := exec.New(p, exec.Options{OutOfOrderTolerance: 5 * time.Second, LateArrivalTolerance: time.Hour,
				Emit: func(string, int64, *value.Record) {}})
			if err != nil {
				b.Fatal(err)
			}
			arrival := value.FromTime(start.Add(time.Second))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := events[i&(len(events)-1)]
				if sources == 0 {
					err = ex.Ingest("readings", e, arrival)
				} else {
					err = ex.IngestFrom("readings", i%sources, e, arrival)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEdgeQueryAccounting is the cost of job memory budgets (issue
// 13) on the seed query: budget=on measures the executor's state
// (exec.StateBytes) every 2 s of event time, as a partition does in
// checkBudgets; budget=off does not. Both run in the same process, the
// per-event difference is the accounting.
func BenchmarkEdgeQueryAccounting(b *testing.B) {
	for _, budget := range []bool{false, true} {
		name := "budget=off"
		if budget {
			name = "budget=on"
		}
		b.Run("devices=10k/"+name, func(b *testing.B) {
			p, err := plan.FromSQL(edgeQuery)
			if err != nil {
				b.Fatal(err)
			}
			var sink []byte
			ex, err := exec.New(p, exec.Options{Emit: func(_ string, _ int64, rec *value.Record) {
				sink = value.AppendRecordJSON(sink[:0], rec)
			}})
			if err != nil {
				b.Fatal(err)
			}
			events := payloads(1<<16, 10_000)
			arrival := value.FromTime(mustUnix(1_767_225_600))
			step := 100 * value.TicksPerMicrosecond
			const every = 2 * value.TicksPerSecond // actors.budgetCheckEvery
			checked, walks := arrival, 0
			var state int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				arrival += step
				if err := ex.Ingest("EdgeInput", events[i&(len(events)-1)], arrival); err != nil {
					b.Fatal(err)
				}
				if budget && arrival-checked >= every {
					checked = arrival
					state = ex.StateBytes()
					walks++
				}
			}
			ex.Flush()
			b.StopTimer()
			b.ReportMetric(float64(walks), "walks")
			_ = state
		})
	}
}
