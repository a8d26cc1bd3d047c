package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/millstream/millstream/actors"
)

// discardPublisher takes every MQTT output row and sends nothing.
type discardPublisher struct{}

func (discardPublisher) Publish(string, []byte, byte) error { return nil }

// BenchmarkGatewayIngestMemory is the in-memory gateway's path from
// Ingest to delivered rows, without the broker: the temperature-monitoring
// job (each reading also to a file output, alerts to a log, aggregates
// over MQTT to a publisher that discards them), 16 partitions, 10,000
// devices, one producer. The timer includes Drain, which in memory waits
// for the rows' delivery. cpu-ns/op is the process's CPU time (user and
// system) per event, less sensitive to other load on the machine than
// ns/op.
func BenchmarkGatewayIngestMemory(b *testing.B) {
	job := temperatureJob(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(discardPublisher{}, io.Discard)
	if err := outs.Configure(job); err != nil {
		b.Fatal(err)
	}
	g := actors.New(actors.Config{Partitions: 16, Logger: quiet}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := g.Deploy(ctx, job); err != nil {
		b.Fatal(err)
	}
	const devices = 10_000
	payloads := make([][]byte, devices)
	ids := make([]string, devices)
	for d := range payloads {
		ids[d] = fmt.Sprintf("device-%05d", d)
		payloads[d] = fmt.Appendf(nil, `{"deviceId":"%s","sensorId":"s1","temperature":%d.5,"pressure":1013.2,"humidity":41.5}`, ids[d], 60+d%50)
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := cpu()
	for i := 0; i < b.N; i++ {
		d := i % devices
		if err := g.Ingest("IotHubInput", ids[d], payloads[d]); err != nil {
			b.Fatal(err)
		}
	}
	if err := g.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	_ = g.Close(ctx)
	_ = outs.Close()
}
