package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream"
	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/actors/admin"
	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/config"
)

// These tests attack a gateway's admin API over real sockets on
// 127.0.0.1 (the gateway runs in the test process, started from a YAML
// configuration like "millstream gateway" starts it), and check after
// every refusal that nothing changed.

// attackGateway is a running gateway and what its log says.
type attackGateway struct {
	rg   *millstream.Gateway
	base string // http(s)://addr
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAttackGateway starts a gateway from YAML (data_dir and the ports
// are filled in) and stops it at cleanup.
func startAttackGateway(t *testing.T, dir, extra string) *attackGateway {
	t.Helper()
	cfgPath := filepath.Join(dir, "gw.yaml")
	yaml := fmt.Sprintf("name: gw\nmqtt_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\npartitions: 2\ndata_dir: %s\ndurability: {disabled: true}\n%s",
		filepath.Join(dir, "data"), extra)
	require.NoError(t, os.WriteFile(cfgPath, []byte(yaml), 0o600))
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	rg, err := startGatewayWith(ctx, mustLoadGateway(t, cfgPath), io.Discard, slog.New(slog.NewTextHandler(logs, nil)), false)
	require.NoError(t, err)
	t.Cleanup(func() {
		rg.Close(context.Background())
		cancel()
	})
	// Not rg.http.TLSConfig: the serving goroutine sets it up for HTTP/2.
	return &attackGateway{rg: rg, base: rg.AdminURL(), logs: logs}
}

// call makes one request; hdr are header name/value pairs.
func call(t *testing.T, c *http.Client, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (g *attackGateway) jobNames() []string {
	var names []string
	for _, j := range g.rg.Runtime().Jobs() {
		names = append(names, j.Name)
	}
	return names
}

func logJob(name string) string {
	return fmt.Sprintf("name: %s\nquery: SELECT deviceId, v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n", name)
}

// newToken runs "millstream token" and returns the token and the line
// for the tokens file.
func newToken(t *testing.T, name, role string) (string, string) {
	t.Helper()
	code, out, stderr := runCLI(t, "token", name, "--role", role)
	require.Equal(t, 0, code, stderr)
	m := regexp.MustCompile(`\): (mst_\S+)\nline for admin.tokens_file:\n(.+)\n`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return m[1], m[2]
}

// TestAttackAdminTokens: with a tokens file, nothing but the health
// checks answers without a token, a read token cannot change anything,
// an operate token can, and profiles are off.
func TestAttackAdminTokens(t *testing.T) {
	dir := t.TempDir()
	opTok, opLine := newToken(t, "ops", "operate")
	readTok, readLine := newToken(t, "viewer", "read")
	tokens := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("# admin tokens\n"+opLine+"\n"+readLine+"\n"), 0o600))
	g := startAttackGateway(t, dir, "admin: {tokens_file: "+tokens+"}\n")
	c := http.DefaultClient
	op, rd := []string{"Authorization", "Bearer " + opTok}, []string{"Authorization", "Bearer " + readTok}
	yamlCT := []string{"Content-Type", "application/yaml"}

	code, _ := call(t, c, "GET", g.base+"/healthz", "")
	require.Equal(t, 200, code)
	code, _ = call(t, c, "GET", g.base+"/readyz", "")
	require.Equal(t, 200, code)

	resp, err := http.Get(g.base + "/v1/jobs")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
	code, _ = call(t, c, "GET", g.base+"/metrics", "")
	require.Equal(t, 401, code, "metrics name jobs and outputs: they need the read role")

	code, body := call(t, c, "PUT", g.base+"/v1/jobs", logJob("sneaky"), yamlCT...)
	require.Equal(t, 401, code, body)
	code, _ = call(t, c, "PUT", g.base+"/v1/jobs", logJob("sneaky"), append(yamlCT, "Authorization", "Bearer mst_guessed")...)
	require.Equal(t, 401, code)
	code, _ = call(t, c, "PUT", g.base+"/v1/jobs", logJob("sneaky"), append(yamlCT, "Authorization", "Basic b3BzOm9wcw==")...)
	require.Equal(t, 401, code)
	code, body = call(t, c, "PUT", g.base+"/v1/jobs", logJob("sneaky"), append(yamlCT, rd...)...)
	require.Equal(t, 403, code, body)
	require.Contains(t, body, `role \"read\"`)
	require.Empty(t, g.jobNames(), "refused deploys deployed nothing")

	code, body = call(t, c, "PUT", g.base+"/v1/jobs", logJob("ok"), append(yamlCT, op...)...)
	require.Equal(t, 200, code, body)
	code, body = call(t, c, "GET", g.base+"/v1/jobs", "", rd...)
	require.Equal(t, 200, code)
	require.Contains(t, body, `"name":"ok"`)
	code, _ = call(t, c, "DELETE", g.base+"/v1/jobs/ok", "", rd...)
	require.Equal(t, 403, code)
	require.Equal(t, []string{"ok"}, g.jobNames())

	code, _ = call(t, c, "GET", g.base+"/debug/pprof/", "", op...)
	require.Equal(t, 404, code, "profiles are off unless admin.pprof")

	code, body = call(t, c, "GET", g.base+"/metrics", "", rd...)
	require.Equal(t, 200, code)
	require.Contains(t, body, `millstream_admin_refused_total{reason="unauthenticated"} 5`)
	require.Contains(t, body, `millstream_admin_refused_total{reason="forbidden"} 2`)
	require.NotContains(t, g.logs.String(), opTok)
	require.NotContains(t, g.logs.String(), readTok)

	// Revoking a token is deleting its line; the file is read again.
	time.Sleep(10 * time.Millisecond) // a new modification time
	require.NoError(t, os.WriteFile(tokens, []byte(opLine+"\n"), 0o600))
	require.Eventually(t, func() bool {
		code, _ := call(t, c, "GET", g.base+"/v1/jobs", "", rd...)
		return code == 401
	}, 10*time.Second, 100*time.Millisecond)
	code, _ = call(t, c, "GET", g.base+"/v1/jobs", "", op...)
	require.Equal(t, 200, code)

	// The command line sends the token from $MILLSTREAM_ADMIN_TOKEN.
	jobFile := filepath.Join(dir, "cli.yaml")
	require.NoError(t, os.WriteFile(jobFile, []byte(logJob("cli")), 0o600))
	t.Setenv("MILLSTREAM_ADMIN_TOKEN", "")
	code, _, stderr := runCLI(t, "job", "list", "--admin", g.base)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "401")
	require.Contains(t, stderr, "--token or $MILLSTREAM_ADMIN_TOKEN")
	t.Setenv("MILLSTREAM_ADMIN_TOKEN", opTok)
	code, out, stderr := runCLI(t, "job", "deploy", "--admin", g.base, jobFile)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "cli")
	code, out, stderr = runCLI(t, "deadletters", "--admin", g.base)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "refused since start")
	code, _, stderr = runCLI(t, "job", "list", "--admin", "http://10.0.0.1:8080")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "refusing to send a token over plain HTTP")
	require.Equal(t, []string{"cli", "ok"}, sorted(g.jobNames()))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestAttackCrossOriginAndRebinding: a web page cannot deploy through a
// browser (no authentication here, as on a default loopback gateway):
// foreign origins, text/plain and form bodies, and foreign Host names
// are refused, and nothing is deployed.
func TestAttackCrossOriginAndRebinding(t *testing.T) {
	dir := t.TempDir()
	g := startAttackGateway(t, dir, "admin: {allowed_origins: [\"https://console.plant.example\"]}\n")
	c := http.DefaultClient
	job := logJob("evil")

	for _, tc := range []struct {
		name string
		want int
		hdr  []string
	}{
		{"text/plain from a foreign page", 403, []string{"Origin", "http://evil.example", "Content-Type", "text/plain"}},
		{"json from a foreign page", 403, []string{"Origin", "http://evil.example", "Content-Type", "application/json"}},
		{"opaque origin", 403, []string{"Origin", "null", "Content-Type", "application/yaml"}},
		{"text/plain without Origin", 415, []string{"Content-Type", "text/plain;charset=UTF-8"}},
		{"form", 415, []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"multipart", 415, []string{"Content-Type", "multipart/form-data; boundary=x"}},
		{"no type", 415, nil},
		{"DNS rebinding", 421, []string{"Host", "evil.example:" + portOf(g.rg.AdminAddr()), "Content-Type", "application/yaml"}},
		{"rebinding with the page's own origin", 421, []string{"Host", "evil.example", "Origin", "http://evil.example", "Content-Type", "application/yaml"}},
	} {
		code, body := call(t, c, "POST", g.base+"/v1/jobs", job, tc.hdr...)
		require.Equal(t, tc.want, code, "%s: %s", tc.name, body)
		require.Empty(t, g.jobNames(), tc.name)
	}
	code, _ := call(t, c, "GET", g.base+"/v1/jobs", "", "Host", "rebind.evil.example")
	require.Equal(t, 421, code, "reads too: a rebound page would read the jobs")

	// The API's own origin, an allowed origin and the gateway's names pass.
	code, body := call(t, c, "POST", g.base+"/v1/jobs", logJob("own"), "Origin", g.base, "Content-Type", "application/yaml")
	require.Equal(t, 200, code, body)
	code, _ = call(t, c, "GET", g.base+"/v1/jobs", "", "Host", "localhost:"+portOf(g.rg.AdminAddr()))
	require.Equal(t, 200, code)
	code, _ = call(t, c, "GET", g.base+"/v1/jobs", "", "Host", "gw")
	require.Equal(t, 200, code)
	req, _ := http.NewRequest("OPTIONS", g.base+"/v1/jobs", nil)
	req.Header.Set("Origin", "https://console.plant.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 204, resp.StatusCode)
	require.Equal(t, "https://console.plant.example", resp.Header.Get("Access-Control-Allow-Origin"))
	code, _ = call(t, c, "OPTIONS", g.base+"/v1/jobs", "", "Origin", "http://evil.example")
	require.Equal(t, 403, code)
	require.Equal(t, []string{"own"}, g.jobNames())

	code, _ = call(t, c, "POST", g.base+"/v1/cluster/forget/gw9", "")
	require.Equal(t, 404, code, "a body-less POST needs no type (cluster forget); this gateway is not clustered")
	code, _ = call(t, c, "GET", g.base+"/debug/pprof/", "")
	require.Equal(t, 404, code)
	pp := startAttackGateway(t, t.TempDir(), "admin: {pprof: true}\n")
	code, _ = call(t, c, "GET", pp.base+"/debug/pprof/", "")
	require.Equal(t, 200, code, "admin.pprof turns profiles on")

	code, body = call(t, c, "GET", g.base+"/metrics", "")
	require.Equal(t, 200, code)
	require.Contains(t, body, `millstream_admin_refused_total{reason="origin"} 4`)
	require.Contains(t, body, `millstream_admin_refused_total{reason="content_type"} 4`)
	require.Contains(t, body, `millstream_admin_refused_total{reason="host"} 3`)
	require.Contains(t, g.logs.String(), "admin API request refused")
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// TestAttackJobFiles: jobs cannot read or write files outside the data
// roots, and a file output never touches a file it did not create.
func TestAttackJobFiles(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	outside := filepath.Join(dir, "outside")
	require.NoError(t, os.MkdirAll(data, 0o755))
	require.NoError(t, os.MkdirAll(outside, 0o755))
	g := startAttackGateway(t, dir, "")
	c := http.DefaultClient
	deploy := func(yaml string) (int, string) {
		return call(t, c, "PUT", g.base+"/v1/jobs", yaml, "Content-Type", "application/yaml")
	}
	fileJob := func(name, path string) string {
		return fmt.Sprintf("name: %s\nquery: SELECT deviceId, v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, file: {path: %q, max_bytes: 400}}]\n", name, path)
	}

	code, body := deploy(`name: leak
query: SELECT t.deviceId, s.secret INTO o FROM telemetry t JOIN s ON t.deviceId = s.id
inputs: [{name: telemetry}, {name: s, reference_file: /etc/passwd}]
outputs: [{name: o, log: {}}]
`)
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "outside the data roots")

	escape := filepath.Join(data, "..", "..", "x.jsonl")
	code, body = deploy(fileJob("escape", escape))
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "outside the data roots")
	require.NoFileExists(t, filepath.Clean(escape))

	// A link inside the data directory does not lead out of it.
	require.NoError(t, os.Symlink(outside, filepath.Join(data, "link")))
	code, body = deploy(fileJob("link", filepath.Join(data, "link", "x.jsonl")))
	require.Equal(t, 400, code, body)
	require.NoFileExists(t, filepath.Join(outside, "x.jsonl"))
	require.NoError(t, os.Symlink(filepath.Join(outside, "target"), filepath.Join(data, "dangling.jsonl")))
	code, body = deploy(fileJob("dangling", filepath.Join(data, "dangling.jsonl")))
	require.Equal(t, 400, code, body)
	require.NoFileExists(t, filepath.Join(outside, "target"))

	// Files the output did not create: the old sink cut a file to its last
	// newline, appended to it and renamed it.
	precious := filepath.Join(data, "precious.log")
	require.NoError(t, os.WriteFile(precious, []byte("line one\nno newline at the end"), 0o644))
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(precious, old, old))
	code, body = deploy(fileJob("clobber", precious))
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "was not created by this gateway's file output")
	rotated := filepath.Join(data, "fresh.jsonl")
	require.NoError(t, os.WriteFile(rotated+".1", []byte("someone else's\n"), 0o644))
	require.NoError(t, os.Chtimes(rotated+".1", old, old))
	code, body = deploy(fileJob("rotate", rotated))
	require.Equal(t, 400, code, body)
	require.NoFileExists(t, rotated)
	for _, p := range []string{precious, rotated + ".1"} {
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.True(t, st.ModTime().Equal(old), "%s untouched", p)
	}
	b, _ := os.ReadFile(precious)
	require.Equal(t, "line one\nno newline at the end", string(b))

	// Secrets may not be read from anywhere either.
	code, body = deploy(httpJob("hdrfile", "http://127.0.0.1:1/", "X-Leak: file:/etc/hostname"))
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "outside the data roots")
	t.Setenv("HOME_SECRET_FOR_TEST", "x")
	code, body = deploy(httpJob("hdrenv", "http://127.0.0.1:1/", "X-Leak: env:HOME_SECRET_FOR_TEST"))
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "MILLSTREAM_*")
	require.Empty(t, g.jobNames(), "every refused job deployed nothing")

	// What the output creates, it writes, rotates, and takes up again.
	mine := filepath.Join(data, "out", "o.jsonl")
	code, body = deploy(fileJob("mine", mine))
	require.Equal(t, 200, code, body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		require.NoError(t, g.rg.Runtime().Ingest("telemetry", "d1", []byte(fmt.Sprintf(`{"deviceId":"d1","v":%d}`, 10+i))))
	}
	require.NoError(t, g.rg.Runtime().Drain(ctx))
	code, body = deploy(fileJob("mine", mine))
	require.Equal(t, 200, code, "a file the output created is its own after a redeploy: %s", body)
	require.NoError(t, g.rg.Outputs().Close())
	// 50-byte rows, 400 bytes a file: rotated twice, the second time over
	// the path.1 it made the first time.
	cur, err := os.ReadFile(mine)
	require.NoError(t, err)
	prev, err := os.ReadFile(mine + ".1")
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(string(cur), "\n"))
	require.Contains(t, string(cur), `"v":26}`)
	require.Equal(t, 8, strings.Count(string(prev), "\n"))
	require.Contains(t, string(prev), `"v":18}`)
}

func httpJob(name, url string, headers ...string) string {
	h := ""
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		h += fmt.Sprintf("%q: %q, ", k, v)
	}
	return fmt.Sprintf("name: %s\nquery: SELECT deviceId, v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, http: {url: %q, batch_size: 1, batch_interval: 0.01s, headers: {%s}}}]\n",
		name, url, strings.TrimSuffix(h, ", "))
}

// TestAttackSecretsNotShown: header values never come back from the API
// or reach the log; references resolve at start; a job read back and
// deployed again is refused instead of sending "<redacted>".
func TestAttackSecretsNotShown(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	secretFile := filepath.Join(dir, "data", "api-key")
	require.NoError(t, os.WriteFile(secretFile, []byte("key-from-file\n"), 0o600))
	t.Setenv("MILLSTREAM_TEST_TOKEN", "token-from-env")
	var mu sync.Mutex
	var got []http.Header
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
	}))
	defer recv.Close()
	g := startAttackGateway(t, dir, "")
	c := http.DefaultClient
	job := httpJob("cloud", recv.URL, "Authorization: Bearer inline-s3cret", "X-Api-Key: file:"+secretFile, "X-Token: env:MILLSTREAM_TEST_TOKEN")
	code, body := call(t, c, "PUT", g.base+"/v1/jobs", job, "Content-Type", "application/yaml")
	require.Equal(t, 200, code, body)
	require.NoError(t, g.rg.Runtime().Ingest("telemetry", "d1", []byte(`{"deviceId":"d1","v":1}`)))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 0 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, "Bearer inline-s3cret", got[0].Get("Authorization"))
	require.Equal(t, "key-from-file", got[0].Get("X-Api-Key"))
	require.Equal(t, "token-from-env", got[0].Get("X-Token"))
	mu.Unlock()

	code, body = call(t, c, "GET", g.base+"/v1/jobs/cloud", "")
	require.Equal(t, 200, code)
	for _, s := range []string{"inline-s3cret", "key-from-file", "token-from-env"} {
		require.NotContains(t, body, s)
		require.NotContains(t, g.logs.String(), s)
	}
	var fetched struct{ Job json.RawMessage }
	require.NoError(t, json.Unmarshal([]byte(body), &fetched))
	var shown struct {
		Outputs []struct {
			HTTP struct{ Headers map[string]string }
		}
	}
	require.NoError(t, json.Unmarshal(fetched.Job, &shown))
	require.Equal(t, map[string]string{"Authorization": actors.Redacted, "X-Api-Key": "file:" + secretFile, "X-Token": "env:MILLSTREAM_TEST_TOKEN"},
		shown.Outputs[0].HTTP.Headers, "inline values redacted, references shown as written")

	// Deploy what GET returned: refused, and the running job keeps its secret.
	code, body = call(t, c, "PUT", g.base+"/v1/jobs", string(fetched.Job), "Content-Type", "application/json")
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "a job read back from the admin API hides its secrets")
	require.NoError(t, g.rg.Runtime().Ingest("telemetry", "d1", []byte(`{"deviceId":"d1","v":2}`)))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 1 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, "Bearer inline-s3cret", got[len(got)-1].Get("Authorization"))
	mu.Unlock()

	code, body = call(t, c, "PUT", g.base+"/v1/jobs", httpJob("unset", recv.URL, "X-Token: env:MILLSTREAM_NOT_SET"), "Content-Type", "application/yaml")
	require.Equal(t, 400, code)
	require.Contains(t, body, "MILLSTREAM_NOT_SET")
	require.Equal(t, []string{"cloud"}, g.jobNames())
}

// TestAttackDeviceTopicEscape: a device id cannot carry a topic level or
// wildcard into the topic desired properties are published on.
func TestAttackDeviceTopicEscape(t *testing.T) {
	g := startAttackGateway(t, t.TempDir(), "")
	var mu sync.Mutex
	var topics []string
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + g.rg.BrokerAddr()).SetClientID("watcher"))
	tok := sub.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer sub.Disconnect(100)
	tok = sub.Subscribe("#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		topics = append(topics, m.Topic())
		mu.Unlock()
	})
	require.True(t, tok.WaitTimeout(5*time.Second))
	c := http.DefaultClient
	for _, id := range []string{"other%2Fcommands", "a%2F..%2Fb", "%2B", "%23", "x%00", "%20%2F"} {
		code, body := call(t, c, "PUT", g.base+"/v1/devices/"+id+"/desired", `{"valve":"open"}`, "Content-Type", "application/json")
		require.Equal(t, 400, code, "%s: %s", id, body)
	}
	code, body := call(t, c, "PUT", g.base+"/v1/devices/press-1/desired", `{"valve":"open"}`, "Content-Type", "application/json")
	require.Equal(t, 200, code, body)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(topics) > 0 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"devices/press-1/twin/desired"}, topics, "only the valid id published")
}

// TestAttackAdminTLS: an HTTPS admin API authenticates client
// certificates of its CA by their role, and a certificate of another CA
// does not get through the handshake.
func TestAttackAdminTLS(t *testing.T) {
	dir := t.TempDir()
	cd := filepath.Join(dir, "certs")
	for _, args := range [][]string{
		{"cert", "ca", "--dir", cd},
		{"cert", "gateway", "gw", "--dir", cd},
		{"cert", "admin", "alice", "--role", "operate", "--dir", cd},
		{"cert", "admin", "bob", "--role", "read", "--dir", cd},
	} {
		code, _, stderr := runCLI(t, args...)
		require.Equal(t, 0, code, stderr)
	}
	g := startAttackGateway(t, dir, fmt.Sprintf("admin: {tls: {cert_file: %s, key_file: %s, ca_file: %s}}\n",
		filepath.Join(cd, "gateway-gw.crt"), filepath.Join(cd, "gateway-gw.key"), filepath.Join(cd, "ca.crt")))
	caPEM, err := os.ReadFile(filepath.Join(cd, "ca.crt"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	client := func(certs ...tls.Certificate) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
	pair := func(base string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(cd, base+".crt"), filepath.Join(cd, base+".key"))
		require.NoError(t, err)
		return c
	}
	alice, bob := client(pair("admin-alice")), client(pair("admin-bob"))
	yamlCT := []string{"Content-Type", "application/yaml"}

	code, body := call(t, alice, "PUT", g.base+"/v1/jobs", logJob("tls"), yamlCT...)
	require.Equal(t, 200, code, body)
	code, _ = call(t, bob, "GET", g.base+"/v1/jobs", "")
	require.Equal(t, 200, code)
	code, _ = call(t, bob, "DELETE", g.base+"/v1/jobs/tls", "")
	require.Equal(t, 403, code)
	code, _ = call(t, client(), "GET", g.base+"/v1/jobs", "")
	require.Equal(t, 401, code, "TLS without a client certificate or token")
	code, _ = call(t, client(pair("gateway-gw")), "DELETE", g.base+"/v1/jobs/tls", "")
	require.Equal(t, 403, code, "a gateway certificate carries no admin role")
	require.Equal(t, []string{"tls"}, g.jobNames())

	other, err := certs.NewCA("other", time.Hour)
	require.NoError(t, err)
	certPEM, keyPEM, err := other.Issue(certs.Request{Kind: certs.Admin, Name: "mallory", Role: "operate"})
	require.NoError(t, err)
	mallory, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	// Go's client offers no certificate the server's CA list does not
	// name: that is a request without one.
	code, _ = call(t, client(mallory), "DELETE", g.base+"/v1/jobs/tls", "")
	require.Equal(t, 401, code)
	insist := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &mallory, nil }}}}
	req, _ := http.NewRequest("DELETE", g.base+"/v1/jobs/tls", nil)
	_, err = insist.Do(req)
	require.Error(t, err, "a certificate of another CA fails the handshake")
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}}}
	_, err = old.Get(g.base + "/v1/jobs")
	require.Error(t, err, "TLS 1.1 is refused")
	resp, err := http.Get("http://" + g.rg.AdminAddr() + "/v1/jobs")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, 400, resp.StatusCode, "plain HTTP to the HTTPS port")
	}
	require.Equal(t, []string{"tls"}, g.jobNames())
	require.Eventually(t, func() bool {
		_, body := call(t, bob, "GET", g.base+"/metrics", "")
		return strings.Contains(body, `millstream_admin_refused_total{reason="tls_handshake"}`)
	}, 5*time.Second, 50*time.Millisecond)

	// The command line: the gateway's CA and a client certificate.
	code, out, stderr := runCLI(t, "job", "list", "-o", "json", "--admin", g.base, "--ca", filepath.Join(cd, "ca.crt"),
		"--cert", filepath.Join(cd, "admin-bob.crt"), "--key", filepath.Join(cd, "admin-bob.key"))
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `"tls"`)
	code, _, stderr = runCLI(t, "job", "rm", "--admin", g.base, "--ca", filepath.Join(cd, "ca.crt"),
		"--cert", filepath.Join(cd, "admin-bob.crt"), "--key", filepath.Join(cd, "admin-bob.key"), "tls")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "403")
	code, _, stderr = runCLI(t, "job", "list", "--admin", g.base)
	require.Equal(t, 1, code, "without --ca the gateway's certificate is not trusted")
	require.Contains(t, stderr, "certificate")
	require.Equal(t, []string{"tls"}, g.jobNames())
}

// TestAttackOpenAdminOffLoopback: an admin API off loopback without TLS
// and authentication does not start unless insecure is set.
func TestAttackOpenAdminOffLoopback(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("name: gw\nmqtt_listen: none\nhttp_listen: 0.0.0.0:0\ndata_dir: %s\ndurability: {disabled: true}\n", filepath.Join(dir, "data"))), 0o600))
	_, err := config.LoadGateway(cfg)
	require.ErrorContains(t, err, "http_listen 0.0.0.0:0 has no authentication")
	require.ErrorContains(t, err, "http_listen 0.0.0.0:0 is plain HTTP off loopback")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("name: gw\nmqtt_listen: none\nhttp_listen: 0.0.0.0:0\ndata_dir: %s\ndurability: {disabled: true}\ninsecure: true\n", filepath.Join(dir, "data"))), 0o600))
	rg, err := startGateway(context.Background(), mustLoadGateway(t, cfg), io.Discard, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rg.Close(context.Background())
}

// TestCertCommandEndToEnd: "millstream cert" writes a CA and the
// certificates it signs, each verifying for its use only, with private
// keys; it never overwrites, and refuses names that leave the directory.
func TestCertCommandEndToEnd(t *testing.T) {
	cd := filepath.Join(t.TempDir(), "certs")
	code, out, stderr := runCLI(t, "cert", "gateway", "gw1", "--dir", cd)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "run 'millstream cert ca")
	for _, args := range [][]string{
		{"cert", "ca", "--dir", cd},
		{"cert", "gateway", "gw1", "--dir", cd, "--host", "10.1.2.3", "--host", "gw1.plant.example"},
		{"cert", "admin", "--role", "read", "viewer", "--dir", cd},
		{"cert", "device", "press-7", "--dir", cd, "--days", "30"},
	} {
		code, out, stderr = runCLI(t, args...)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, out, "wrote ")
	}
	caPEM, err := os.ReadFile(filepath.Join(cd, "ca.crt"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	verify := func(base string, opts x509.VerifyOptions) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(filepath.Join(cd, base+".crt"), filepath.Join(cd, base+".key"))
		require.NoError(t, err, base)
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		opts.Roots = roots
		_, err = leaf.Verify(opts)
		require.NoError(t, err, base)
		st, err := os.Stat(filepath.Join(cd, base+".key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), base)
		return leaf
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	gw := verify("gateway-gw1", x509.VerifyOptions{DNSName: "gw1.plant.example", KeyUsages: server})
	require.NoError(t, gw.VerifyHostname("10.1.2.3"))
	require.NoError(t, gw.VerifyHostname("gw1"))
	viewer := verify("admin-viewer", x509.VerifyOptions{KeyUsages: client})
	require.Equal(t, []string{"read"}, viewer.Subject.OrganizationalUnit)
	_, err = viewer.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: server})
	require.Error(t, err, "an admin certificate cannot serve")
	dev := verify("device-press-7", x509.VerifyOptions{KeyUsages: client})
	require.Equal(t, "press-7", dev.Subject.CommonName)
	require.WithinDuration(t, time.Now().Add(30*24*time.Hour), dev.NotAfter, 2*time.Hour)

	before, err := os.ReadFile(filepath.Join(cd, "ca.key"))
	require.NoError(t, err)
	for _, args := range [][]string{
		{"cert", "ca", "--dir", cd},
		{"cert", "gateway", "gw1", "--dir", cd},
	} {
		code, _, stderr = runCLI(t, args...)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "file exists")
	}
	after, _ := os.ReadFile(filepath.Join(cd, "ca.key"))
	require.Equal(t, before, after, "the CA is never replaced")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cert", "admin", "eve", "--dir", cd}, "--role read or --role operate"},
		{[]string{"cert", "admin", "eve", "--role", "root", "--dir", cd}, "--role read or --role operate"},
		{[]string{"cert", "device", "../../escape", "--dir", cd}, "no '/'"},
		{[]string{"cert", "gateway", "../../escape", "--dir", cd}, "cannot be a file name"},
		{[]string{"cert", "frob"}, "unknown cert subcommand"},
		{[]string{"cert", "gateway", "--dir", cd}, "needs one name"},
		{[]string{"token", "x"}, "--role read or --role operate"},
	} {
		code, _, stderr = runCLI(t, tc.args...)
		require.NotEqual(t, 0, code, tc.args)
		require.Contains(t, stderr, tc.want, tc.args)
	}
	require.NoFileExists(t, filepath.Join(filepath.Dir(cd), "escape.crt"))
	require.NoFileExists(t, filepath.Join(filepath.Dir(filepath.Dir(cd)), "escape.crt"))

	tok, line := newToken(t, "ci", "operate")
	toks, err := admin.ParseTokens([]byte(line))
	require.NoError(t, err)
	require.Len(t, toks, 1)
	require.Equal(t, "operate", toks[0].Role)
	require.Equal(t, admin.HashToken(tok), strings.Fields(line)[2])
	tok2, _ := newToken(t, "ci", "operate")
	require.NotEqual(t, tok, tok2)
}
