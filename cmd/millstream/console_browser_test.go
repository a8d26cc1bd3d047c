package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream"
	"github.com/millstream/millstream/actors/admin"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// consoleGateway is an in-process gateway (embedded broker, in-memory
// state) for the console's browser tests, with an operate token when
// token is not empty.
func consoleGateway(t *testing.T, token string) *millstream.Gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := &pb.GatewayConfig{Name: "plant-gw1", DataDir: filepath.Join(dir, "data"), MqttListen: "127.0.0.1:0", HttpListen: "127.0.0.1:0",
		Partitions: 4, Durability: &pb.Durability{Disabled: true}}
	if token != "" {
		tokens := filepath.Join(dir, "tokens")
		require.NoError(t, os.WriteFile(tokens, []byte("operator operate "+admin.HashToken(token)+"\n"), 0o600))
		cfg.Admin = &pb.Admin{TokensFile: tokens}
	}
	rg, err := startGateway(context.Background(), cfg, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rg.Close(ctx)
	})
	return rg
}

// browser starts a headless Chromium (skipped loudly without one, see
// testutil.Chromium) and returns a context for its tab that ends after
// timeout; the browser is stopped at cleanup.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(testutil.Chromium(t)), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860)}
	for _, f := range testutil.ChromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first action starts the browser, with no deadline: a deadline
	// on it would stop the browser (chromedp.Run); so a start failure is
	// also told apart from a page that does not work.
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	ctx, cancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(cancel)
	return ctx
}

// evalJS evaluates a JavaScript expression on the page.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// waitJS polls a JavaScript condition on the page until it holds; on
// timeout it fails with what explain (an expression) says about the page.
func waitJS(t *testing.T, ctx context.Context, within time.Duration, cond, explain string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(within)))
	if err == nil {
		return
	}
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](explain))
	t.Fatalf("page never got to %s (%v); the page shows: %s", cond, err, state)
}

// publish sends n readings of device over the embedded broker (QoS 1,
// each acknowledged).
func publish(t *testing.T, broker, device string, n int) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(fmt.Sprintf("console-test-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectRetry(false))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	for i := range n {
		tok := c.Publish("devices/"+device+"/messages/events/", 1, false, fmt.Sprintf(`{"deviceId":%q,"temperature":%d}`, device, 60+i*3%50))
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
	}
}
