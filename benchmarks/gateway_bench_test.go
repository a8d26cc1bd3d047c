package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// BenchmarkGatewayAlertLatency measures the time from a device's publish to
// the arrival of the non-windowed alert it causes on the output topic,
// through the embedded broker, a partition actor and the MQTT output, at a
// fixed publish rate (msg/s below) with every message an alert. Run with
// -benchtime 1x; it reports the p50, p99 and p999 latency in microseconds.
func BenchmarkGatewayAlertLatency(b *testing.B) {
	for _, rate := range []int{10_000, 50_000} {
		for _, to := range []string{"sink", "mqtt"} {
			b.Run(fmt.Sprintf("rate=%d/to=%s", rate, to), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					lat := alertLatencies(b, rate, 3*time.Second, to == "mqtt")
					sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
					pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
					b.ReportMetric(pct(0.5), "p50-µs")
					b.ReportMetric(pct(0.99), "p99-µs")
					b.ReportMetric(pct(0.999), "p999-µs")
					b.ReportMetric(float64(len(lat)), "alerts")
				}
			})
		}
	}
}

// latencySink measures at the job's output, before any MQTT delivery.
type latencySink struct {
	mu  *sync.Mutex
	lat *[]time.Duration
}

func (s latencySink) Write(_, _ string, _ int64, rec *value.Record) {
	now := time.Now().UnixNano()
	v, _ := rec.Get("sentNs")
	s.mu.Lock()
	*s.lat = append(*s.lat, time.Duration(now-v.Int()))
	s.mu.Unlock()
}

func alertLatencies(b *testing.B, rate int, d time.Duration, viaMQTT bool) []time.Duration {
	job, err := config.ParseJob("job.yaml", []byte(`name: alerts
query: SELECT deviceId, temperature, sentNs INTO Alerts FROM Telemetry WHERE temperature > 100
inputs: [{name: Telemetry}]
outputs: [{name: Alerts, mqtt: {topic: "alerts", qos: 0}}]
`))
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, nil)
	var mu sync.Mutex
	var lat []time.Duration
	var sink actors.Sink = outs
	if !viaMQTT {
		sink = actors.Rows(latencySink{mu: &mu, lat: &lat})
	}
	g := actors.New(actors.Config{Partitions: 8, BatchSize: 64, BatchDelay: time.Millisecond, Logger: quiet}, sink, nil)
	broker, err := actors.StartBroker(g, actors.BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1 << 16, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	outs.SetPublisher(broker)
	if err := outs.Configure(job); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer g.Close(ctx)
	if err := g.Deploy(ctx, job); err != nil {
		b.Fatal(err)
	}
	connect := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker.Addr()).SetClientID(id))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatalf("connect: %v", tok.Error())
		}
		return c
	}
	sub := connect("latency-sub")
	defer sub.Disconnect(100)
	sub.Subscribe("alerts", 0, func(_ paho.Client, m paho.Message) {
		now := time.Now().UnixNano()
		p := m.Payload()
		// ..."sentNs":123}
		i := len(p) - 2
		for i > 0 && p[i] >= '0' && p[i] <= '9' {
			i--
		}
		sent, err := strconv.ParseInt(string(p[i+1:len(p)-1]), 10, 64)
		if err != nil {
			return
		}
		mu.Lock()
		lat = append(lat, time.Duration(now-sent))
		mu.Unlock()
	}).WaitTimeout(5 * time.Second)

	const conns = 4
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			pub := connect(fmt.Sprintf("latency-pub-%d", c))
			defer pub.Disconnect(100)
			interval := time.Second * time.Duration(conns) / time.Duration(rate)
			next := time.Now()
			for n := 0; time.Now().Before(deadline); n++ {
				dev := fmt.Sprintf("d%d", (n*conns+c)%1000)
				payload := fmt.Appendf(nil, `{"deviceId":"%s","temperature":120,"sentNs":%d}`, dev, time.Now().UnixNano())
				pub.Publish("devices/"+dev+"/messages/events/", 0, false, payload)
				next = next.Add(interval)
				if s := time.Until(next); s > 0 {
					time.Sleep(s)
				}
			}
		}(c)
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no alerts arrived")
	}
	return append([]time.Duration(nil), lat...)
}

// BenchmarkGatewayMemoryDevices reports the Go heap after one message from
// each of 1,000,000 distinct devices through the temperature-monitoring job
// (device twins, per-device window state), and of an idle gateway with the
// job deployed. Run with -benchtime 1x.
func BenchmarkGatewayMemoryDevices(b *testing.B) {
	for _, devices := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.ReportMetric(float64(gatewayHeap(b, devices))/(1<<20), "heap-MiB")
			}
		})
	}
}

func gatewayHeap(b *testing.B, devices int) uint64 {
	job, err := config.LoadJob("../deployments/jobs/temperature-monitoring/job.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range job.Outputs {
		if f := o.GetFile(); f != nil {
			f.Path = b.TempDir() + "/raw.jsonl"
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, nil)
	if err := outs.Configure(job); err != nil {
		b.Fatal(err)
	}
	defer outs.Close()
	g := actors.New(actors.Config{Partitions: 64, Logger: quiet}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	defer g.Close(ctx)
	if err := g.Deploy(ctx, job); err != nil {
		b.Fatal(err)
	}
	var buf []byte
	for d := 0; d < devices; d++ {
		id := "device-" + strconv.Itoa(d)
		buf = fmt.Appendf(buf[:0], `{"deviceId":"%s","sensorId":"s1","temperature":71.5,"pressure":1013.2,"humidity":41.5}`, id)
		if err := g.Ingest("IotHubInput", id, append([]byte(nil), buf...)); err != nil {
			b.Fatal(err)
		}
	}
	if err := g.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
