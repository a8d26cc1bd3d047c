package sim

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Config of a simulation. Zero fields take the defaults in their comments.
type Config struct {
	// Broker is the MQTT broker URL (default tcp://127.0.0.1:1883).
	Broker string
	// Devices is the number of simulated devices (default 10).
	Devices int
	// Rate is messages per second per device (default 1).
	Rate float64
	// QoS is 0 or 1 (default 1).
	QoS byte
	// Connections spreads devices over this many MQTT connections
	// (default min(devices, 4)).
	Connections int
	// SpikeEvery: about one reading in this many is a spike above 100
	// (default 200; negative disables spikes).
	SpikeEvery int
	// SilentEvery: about one device in this many goes silent for a while
	// (default 10; negative disables).
	SilentEvery int
	// Seed makes runs repeatable (default 1).
	Seed int64
	// Load publishes as fast as the broker takes it, ignoring Rate: each
	// connection cycles through prebuilt payloads (the load generator).
	// With QoS 1 up to 1024 messages per connection are in flight.
	Load bool
	// Progress receives a line every ProgressEvery (default 5s); nil: none.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Stats are totals of a run.
type Stats struct {
	Sent   uint64
	Errors uint64
}

func (c *Config) ensureDefaults() {
	if c.Broker == "" {
		c.Broker = "tcp://127.0.0.1:1883"
	}
	if c.Devices <= 0 {
		c.Devices = 10
	}
	if c.Rate <= 0 {
		c.Rate = 1
	}
	if c.Connections <= 0 {
		c.Connections = min(c.Devices, 4)
	}
	if c.SpikeEvery == 0 {
		c.SpikeEvery = 200
	}
	if c.SilentEvery == 0 {
		c.SilentEvery = 10
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 5 * time.Second
	}
}

// device is one simulated sensor pack. Its temperature wanders slowly
// around its base (a sine of period about 1000 readings), with noise.
type device struct {
	id          string
	base, phase float64
	n           int
	silentUntil time.Time
}

// Run publishes until ctx ends and returns the totals.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	cfg.ensureDefaults()
	var sent, errs atomic.Uint64
	if cfg.Load {
		stopProgress := progress(ctx, cfg, &sent, &errs)
		err := runLoad(ctx, cfg, &sent, &errs)
		stopProgress()
		return Stats{Sent: sent.Load(), Errors: errs.Load()}, err
	}
	clients := make([]paho.Client, cfg.Connections)
	for i := range clients {
		opts := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(fmt.Sprintf("millstream-sim-%d-%d", cfg.Seed, i)).
			SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
			SetMaxReconnectInterval(10 * time.Second)
		c := paho.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return Stats{}, fmt.Errorf("sim: connect to %s: timed out", cfg.Broker)
		}
		if err := tok.Error(); err != nil {
			return Stats{}, fmt.Errorf("sim: connect to %s: %w", cfg.Broker, err)
		}
		clients[i] = c
		defer c.Disconnect(250)
	}
	var wg sync.WaitGroup
	for conn := 0; conn < cfg.Connections; conn++ {
		wg.Add(1)
		go func(conn int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(cfg.Seed + int64(conn)))
			var devs []*device
			for d := conn; d < cfg.Devices; d += cfg.Connections {
				devs = append(devs, &device{id: fmt.Sprintf("machine-%04d", d), base: 65 + rng.Float64()*20, phase: rng.Float64() * 2 * math.Pi})
			}
			interval := time.Duration(float64(time.Second) / (cfg.Rate * float64(len(devs))))
			tick := time.NewTicker(max(interval, 50*time.Microsecond))
			defer tick.Stop()
			var buf []byte
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case now := <-tick.C:
					d := devs[i%len(devs)]
					if now.Before(d.silentUntil) {
						continue
					}
					if cfg.SilentEvery > 0 && rng.Intn(cfg.SilentEvery*int(math.Max(1, cfg.Rate*60))) == 0 {
						d.silentUntil = now.Add(time.Duration(20+rng.Intn(40)) * time.Second)
						continue
					}
					d.n++
					temp := d.base + 5*math.Sin(d.phase+float64(d.n)/160) + rng.NormFloat64()*1.5
					if cfg.SpikeEvery > 0 && rng.Intn(cfg.SpikeEvery) == 0 {
						temp += 30 + rng.Float64()*20
					}
					buf = fmt.Appendf(buf[:0], `{"deviceId":"%s","sensorId":"s1","temperature":%.2f,"humidity":%.1f,"pressure":%.1f,"vibration":%.4f,"ts":"%s"}`,
						d.id, temp, 40+rng.NormFloat64()*5, 1013+rng.NormFloat64()*3, math.Abs(0.02+rng.NormFloat64()*0.01), now.UTC().Format(time.RFC3339Nano))
					tok := clients[conn].Publish("devices/"+d.id+"/messages/events/", cfg.QoS, false, append([]byte(nil), buf...))
					if cfg.QoS > 0 {
						if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
							errs.Add(1)
							continue
						}
					}
					sent.Add(1)
				}
			}
		}(conn)
	}
	stopProgress := progress(ctx, cfg, &sent, &errs)
	defer stopProgress()
	wg.Wait()
	return Stats{Sent: sent.Load(), Errors: errs.Load()}, nil
}

// progress prints a line every cfg.ProgressEvery until the returned stop
// function is called or ctx ends.
func progress(ctx context.Context, cfg Config, sent, errs *atomic.Uint64) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		last, lastAt := uint64(0), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case now := <-t.C:
				s := sent.Load()
				fmt.Fprintf(cfg.Progress, "sim: %d sent, %.0f msg/s, %d errors\n", s, float64(s-last)/now.Sub(lastAt).Seconds(), errs.Load())
				last, lastAt = s, now
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
