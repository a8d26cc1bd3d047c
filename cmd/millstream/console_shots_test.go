package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/sim"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

var consoleShots = flag.String("console.screenshots", "", "write PNG screenshots of the console's pages to this directory (TestConsoleScreenshots; the README's are in docs/img)")

// maxShotBytes keeps the README's screenshots small.
const maxShotBytes = 200 << 10

// TestConsoleScreenshots takes the README's screenshots of the console
// (docs/img/console-*.png) from a one-gateway cluster running the demo's
// job under simulated devices:
//
//	go test ./cmd/millstream -run ConsoleScreenshots -console.screenshots ../../docs/img
//
// It runs only with the flag.
func TestConsoleScreenshots(t *testing.T) {
	if *consoleShots == "" {
		t.Skip("takes screenshots only with -console.screenshots DIR")
	}
	dir := t.TempDir()
	job, err := demoJob(dir)
	require.NoError(t, err)
	hot, err := config.ParseJob("hot.json", []byte(`{"name": "hot-presses", "query": "SELECT deviceId, temperature INTO alerts FROM telemetry WHERE temperature > 95",
		"inputs": [{"name": "telemetry", "topic": "devices/+/messages/events/#", "deviceId": "topic:1"}], "outputs": [{"name": "alerts", "log": {"prefix": "HOT"}}]}`))
	require.NoError(t, err)
	cfg := &pb.GatewayConfig{Name: "plant-gw1", DataDir: filepath.Join(dir, "data"), MqttListen: "127.0.0.1:0", HttpListen: "127.0.0.1:0",
		Partitions: 8, Jobs: []*pb.Job{job, hot},
		Cluster: &pb.Cluster{GossipListen: testutil.FreeAddr(t), RemoteListen: testutil.FreeAddr(t)}}
	rg, err := startGateway(context.Background(), cfg, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rg.Close(ctx)
	}()
	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		_, _ = sim.Run(simCtx, sim.Config{Broker: "tcp://" + rg.BrokerAddr(), Devices: 12, Rate: 4, QoS: 1, SpikeEvery: 40})
	}()
	defer func() { stopSim(); <-simDone }()
	base := "http://" + rg.AdminAddr()
	req, _ := http.NewRequest(http.MethodPut, base+"/v1/devices/machine-0003/desired", strings.NewReader(`{"interval": 5, "threshold": 100}`))
	req.Header.Set("Content-Type", "application/json")

	ctx := browser(t, 2*time.Minute)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/#overview")))
	waitJS(t, ctx, 15*time.Second, `document.querySelector('#live').textContent === 'live'`, `document.querySelector('#live').textContent`)
	time.Sleep(30 * time.Second) // windows close; the plots fill
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	firstDevice := `document.querySelector('#devices tbody tr')`
	shots := []struct {
		name  string
		steps []chromedp.Action[chromedp.Void]
		wait  string
	}{
		{"overview", nil, `document.querySelector('#partitions tbody tr')`},
		{"jobs", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#tabs button[data-tab="jobs"]`)),
			chromedp.Click(chromedp.CSS(`#jobs tbody tr button`))}, `document.querySelector('#plan').textContent.length > 100`},
		{"editor", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#tabs button[data-tab="editor"]`)),
			chromedp.SetValue(chromedp.CSS("#job-name"), "very-hot-presses"), chromedp.SetValue(chromedp.CSS("#sql"), consoleBadQuery),
			chromedp.SetValue(chromedp.CSS("#settings"), consoleSettings), chromedp.Click(chromedp.CSS("#deploy"))},
			`!document.querySelector('#error-marker').hidden`},
		{"devices", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#tabs button[data-tab="devices"]`)),
			chromedp.SetValue(chromedp.CSS("#device-id"), "machine-0003"), chromedp.Click(chromedp.CSS(`#device-find button`))},
			`!document.querySelector('#device-detail').hidden && ` + firstDevice},
		{"outputs", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#tabs button[data-tab="outputs"]`))},
			`document.querySelector('#outputs tbody tr')`},
	}
	require.NoError(t, os.MkdirAll(*consoleShots, 0o755))
	for _, s := range shots {
		require.NoError(t, chromedp.Do(ctx, s.steps...), s.name)
		waitJS(t, ctx, 15*time.Second, s.wait, `document.body.innerText.slice(0, 400)`)
		time.Sleep(1500 * time.Millisecond) // a frame or two more
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err, s.name)
		require.Less(t, len(png), maxShotBytes, "%s: screenshot too large for the README", s.name)
		path := filepath.Join(*consoleShots, "console-"+s.name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("%s: %d KB", path, len(png)>>10)
	}
}
