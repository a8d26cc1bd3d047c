package main

import (
	"bytes"
	"context"
	"encoding/json"
	paho "github.com/eclipse/paho.mqtt.golang"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/millstream/millstream"
)

// TestCLIHelpOnEveryCommand walks the command tree: -h on every command
// and subcommand exits 0 and prints its usage line on stdout.
func TestCLIHelpOnEveryCommand(t *testing.T) {
	root := newRootCmd(io.Discard, io.Discard)
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		args := append(strings.Fields(c.CommandPath())[1:], "-h")
		code, stdout, stderr := runCLI(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
		want := c.UseLine()
		if c.HasAvailableSubCommands() {
			want = c.CommandPath() + " [command]"
		}
		require.Contains(t, stdout, "Usage:\n  "+want, args)
		seen++
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	// Every command of the old dispatcher is in the tree, with completion.
	for _, path := range []string{"demo", "gateway", "simulate", "job deploy", "job list", "job get", "job explain", "job rm",
		"device list", "device get", "device set-desired", "device invoke", "cluster status", "cluster forget", "deadletters",
		"cert ca", "cert gateway", "cert admin", "cert device", "token", "passwd", "query run", "query explain", "query test",
		"version", "help", "completion bash", "completion zsh", "completion fish", "completion powershell"} {
		c, rest, err := root.Find(strings.Fields(path))
		require.NoError(t, err, path)
		require.Empty(t, rest, path)
		require.Equal(t, "millstream "+path, c.CommandPath())
	}
	require.Greater(t, seen, 30)

	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "job"}, {"job", "--help"}, {"gateway", "-help"}} {
		code, stdout, stderr := runCLI(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
		require.Contains(t, stdout, "Usage:", args)
	}
	code, stdout, _ := runCLI(t, "--help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "Exit codes:\n  0  success")
	require.Contains(t, stdout, "2  usage error")
}

// TestCLIUsageErrors: bad command lines exit 2 and say what is wrong.
func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "list", "--frob"}, "unknown flag: --frob"},
		{[]string{"help", "frob"}, `unknown help topic "frob"`},
		{[]string{"help", "job", "frob"}, `unknown help topic "job frob"`},
		{[]string{"device", "get", "press-1", "--frob", "x"}, "unknown flag: --frob"},
		{[]string{"deadletters", "--limit", "3", "--frob"}, "unknown flag: --frob"},
		{[]string{"gateway", "-x"}, "unknown shorthand flag: 'x'"},
		{[]string{"deadletters", "--limit", "many"}, `invalid argument "many" for "--limit"`},
		{[]string{}, "no command given"},
		{[]string{"jbo"}, `unknown command "jbo"; did you mean job?`},
		{[]string{"job"}, "job needs a subcommand: deploy, explain, get, list, rm"},
		{[]string{"job", "lst"}, `unknown job subcommand "lst"`},
		{[]string{"job", "get"}, "job get takes one job name"},
		{[]string{"job", "list", "extra"}, "job list takes no arguments"},
		{[]string{"job", "list", "-o", "xml"}, `-o "xml": want text, json or yaml`},
		{[]string{"device", "set-desired", "press-1"}, "device set-desired takes a device id and a JSON object"},
		{[]string{"deadletters", "--json", "-o", "yaml"}, "give one"},
		{[]string{"query"}, "query needs a subcommand"},
		{[]string{"query", "test"}, "query test needs at least one folder"},
		{[]string{"gateway"}, "--config is required"},
		{[]string{"version", "extra"}, "version takes no arguments"},
	} {
		code, stdout, stderr := runCLI(t, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want, tc.args)
		require.Contains(t, stderr, "--help' for usage", tc.args)
		if len(tc.args) > 0 && tc.args[0] != "query" && tc.args[0] != "job" {
			require.Empty(t, stdout, tc.args)
		}
	}
}

// gatewayConfig writes a gateway configuration on free loopback ports,
// with extra YAML lines, and returns its path.
func gatewayConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("name: gw\nmqtt_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\n"+extra), 0o644))
	return cfg
}

// cliGateway starts a gateway in this process for the admin commands and
// returns its admin API as host:port.
func cliGateway(t *testing.T) *millstream.Gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := gatewayConfig(t, dir, "partitions: 4\n")
	t.Chdir(dir) // the job's file output is relative to the working directory
	ctx, cancel := context.WithCancel(context.Background())
	rg, err := startGateway(ctx, mustLoadGateway(t, cfg), io.Discard, nil)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); rg.Close(context.Background()) })
	return rg
}

// TestCLIAdminCommandsFlagsAfterArgs drives a gateway with every flag
// after the arguments, --admin as host:port, and human output.
func TestCLIAdminCommandsFlagsAfterArgs(t *testing.T) {
	jobFile, err := filepath.Abs(job + "/job.yaml")
	require.NoError(t, err)
	rg := cliGateway(t)     // changes the working directory
	admin := rg.AdminAddr() // host:port, no scheme

	code, stdout, stderr := runCLI(t, "job", "list", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "no jobs deployed (deploy one with 'millstream job deploy FILE')\n", stdout)
	code, stdout, _ = runCLI(t, "job", "list", "--admin", admin, "-o", "json")
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"jobs":null}`, stdout, "-o json is the API's answer as it is")

	code, stdout, stderr = runCLI(t, "job", "deploy", jobFile, "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "job temperature-filtering deployed\n", stdout)
	code, stdout, stderr = runCLI(t, "job", "deploy", jobFile, "--admin", admin, "-o", "json")
	require.Equal(t, 0, code, stderr)
	require.JSONEq(t, `{"deployed":"temperature-filtering"}`, stdout, "-o json is the API's answer as it is")
	code, stdout, stderr = runCLI(t, "device", "set-desired", "press-9", `{"interval":5}`, "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "desired properties of device press-9 set\n", stdout)

	code, stdout, stderr = runCLI(t, "job", "list", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2, stdout)
	require.Regexp(t, `^NAME +INPUTS +OUTPUTS +STATE +BUDGET +STATUS$`, lines[0])
	require.Regexp(t, `^temperature-filtering +EdgeInput +LocalOutput,CloudOutput +\d+(\.\d)? (B|KiB|MiB) +512 MiB +running$`, lines[1])

	require.NoError(t, rg.Runtime().Ingest("EdgeInput", "press-9", []byte(`{"deviceId":"press-9","temperature":75,"eventTime":"2026-11-23T00:00:00Z"}`)))
	require.NoError(t, rg.Runtime().Ingest("EdgeInput", "press-9", []byte(`{"deviceId":"press-9","temperature":`)))
	require.NoError(t, rg.Runtime().Drain(t.Context()))

	code, stdout, stderr = runCLI(t, "job", "get", "temperature-filtering", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?m)^job: +temperature-filtering$`, stdout)
	require.Regexp(t, `(?m)^status: +running$`, stdout)
	require.Regexp(t, `(?m)^inputs: +EdgeInput \(topic devices/\+/messages/events/#\)$`, stdout)
	require.Regexp(t, `(?m)^outputs: +LocalOutput \(file data/temperature-filtering/local.jsonl\); CloudOutput \(mqtt millstream/\{job\}/\{output\}\)$`, stdout)
	require.Regexp(t, `(?m)^events: +2 in, 1 rows out, 1 dead-lettered$`, stdout)
	require.Regexp(t, `(?m)^actors: +\d+\.\d{3} s of work, 0 restarts after a panic$`, stdout)
	require.Contains(t, stdout, "query:\n  ")
	code, stdout, _ = runCLI(t, "job", "explain", "temperature-filtering", "--admin", admin)
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "TUMBLING")

	code, stdout, stderr = runCLI(t, "device", "get", "press-9", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?m)^device: +press-9\nstate: +online\nlast seen: +\S+ \(\d+s ago\)\nmessages: +2 \(110 bytes, 0 resends dropped\)$`, stdout)
	code, _, stderr = runCLI(t, "device", "set-desired", "press-9", `{"interval":5}`, "--admin", admin)
	require.Equal(t, 0, code, stderr)
	code, stdout, stderr = runCLI(t, "device", "list", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `^DEVICE +STATE +LAST SEEN +MESSAGES +DESIRED\npress-9 +online +\d+s ago +2 +\{"interval":5\}\n$`, stdout)

	// A direct method, answered by a device on the embedded broker.
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + rg.BrokerAddr()).SetClientID("press-7").SetAutoReconnect(false))
	require.True(t, dev.Connect().WaitTimeout(5*time.Second))
	defer dev.Disconnect(0)
	tok := dev.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		rid := m.Topic()[strings.LastIndex(m.Topic(), "=")+1:]
		c.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, `{"ok":`+string(m.Payload())+`}`)
	})
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	code, stdout, stderr = runCLI(t, "device", "invoke", "press-7", "reboot", `{"delay":5}`, "--timeout", "10s", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `^status: +200\npayload: +\{"ok":\{"delay":5\}\}\n$`, stdout)
	code, _, stderr = runCLI(t, "device", "invoke", "press-9", "reboot", "--admin", admin)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "404 Not Found: {\"error\":\"actors: device not online for direct methods")

	code, stdout, stderr = runCLI(t, "deadletters", "--limit", "5", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "refused since start: malformed 1")
	require.Contains(t, stdout, "malformed temperature-filtering/EdgeInput source=\"press-9\"")

	code, stdout, stderr = runCLI(t, "job", "rm", "temperature-filtering", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "job temperature-filtering removed\n", stdout)
	code, _, stderr = runCLI(t, "job", "get", "temperature-filtering", "--admin", admin)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "404")
}

// TestCLIOutputFormats: -o json and -o yaml of every showing command
// parse back to the same document.
func TestCLIOutputFormats(t *testing.T) {
	jobFile, err := filepath.Abs(job + "/job.yaml")
	require.NoError(t, err)
	rg := cliGateway(t) // changes the working directory
	admin := "http://" + rg.AdminAddr()
	code, _, stderr := runCLI(t, "job", "deploy", "--admin", admin, jobFile)
	require.Equal(t, 0, code, stderr)
	for _, id := range []string{"press-1", "press-2", "press-3"} {
		require.NoError(t, rg.Runtime().Ingest("EdgeInput", id, []byte(`{"deviceId":"`+id+`","temperature":75,"eventTime":"2026-11-23T00:00:00Z"}`)))
	}
	require.NoError(t, rg.Runtime().Ingest("EdgeInput", "press-1", []byte(`not json`)))
	require.NoError(t, rg.Runtime().Drain(t.Context()))

	for _, cmd := range [][]string{
		{"job", "list"}, {"job", "get", "temperature-filtering"}, {"device", "list"}, {"device", "get", "press-2"},
		{"deadletters"}, {"device", "list", "--limit", "1", "--all"},
	} {
		code, js, stderr := runCLI(t, append(cmd, "-o", "json", "--admin", admin)...)
		require.Equal(t, 0, code, "%v: %s", cmd, stderr)
		var fromJSON any
		require.NoError(t, json.Unmarshal([]byte(js), &fromJSON), "%v: %s", cmd, js)
		code, ys, stderr := runCLI(t, append(cmd, "--admin", admin, "-o", "yaml")...)
		require.Equal(t, 0, code, "%v: %s", cmd, stderr)
		require.NotRegexp(t, `(?m)(^|: )[{\[]"`, ys, "%v: block style, not JSON's flow style", cmd)
		var fromYAML any
		require.NoError(t, yaml.Unmarshal([]byte(ys), &fromYAML), "%v: %s", cmd, ys)
		// Through JSON, so both have JSON's types (float64 numbers).
		again, err := json.Marshal(fromYAML)
		require.NoError(t, err)
		require.JSONEq(t, js, string(again), "%v", cmd)
	}

	// Paging: one page says where the next starts; --all has every device.
	code, stdout, stderr := runCLI(t, "device", "list", "--limit", "2", "--admin", admin)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, 3, strings.Count(stdout, "\n"), stdout)
	require.Contains(t, stderr, "more devices after press-2: --all, or --after press-2")
	code, stdout, _ = runCLI(t, "device", "list", "--limit", "2", "--after", "press-2", "--admin", admin)
	require.Equal(t, 0, code)
	require.Regexp(t, `\npress-3 `, stdout)
	code, stdout, _ = runCLI(t, "device", "list", "--limit", "1", "--all", "-o", "json", "--admin", admin)
	require.Equal(t, 0, code)
	var page devicesPage
	require.NoError(t, json.Unmarshal([]byte(stdout), &page))
	require.Len(t, page.Devices, 3)
	require.Empty(t, page.Next)

	// The JSON lines of --json (kept from before -o) and -o json agree.
	code, stdout, _ = runCLI(t, "deadletters", "--json", "--admin", admin)
	require.Equal(t, 0, code)
	require.Equal(t, 1, strings.Count(stdout, "\n"))
	require.Contains(t, stdout, `"kind":"malformed"`)
}

func TestJSONToYAMLKeepsOrderAndTypes(t *testing.T) {
	y, err := jsonToYAML([]byte(`{"z":"42","a":true,"s":"true","big":18446744073709551615,"q":"SELECT a\nFROM b","l":[1,"x"],"e":{},"n":null}`))
	require.NoError(t, err)
	require.Equal(t, `z: "42"
a: true
s: "true"
big: 18446744073709551615
q: |-
  SELECT a
  FROM b
l:
  - 1
  - x
e: {}
n: null
`, string(y))
}

func TestCLIJobListTable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, printJobs(&buf, []byte(`{"jobs":[
		{"name":"hot","inputs":["readings"],"outputs":["alerts","raw"],"stateBytes":1536,"budgetBytes":536870912},
		{"name":"big","inputs":["a","b"],"outputs":["o"],"stateBytes":600000000,"budgetBytes":536870912,"stopped":"over its memory budget"}]}`)))
	require.Equal(t, `NAME  INPUTS    OUTPUTS     STATE      BUDGET   STATUS
hot   readings  alerts,raw  1.5 KiB    512 MiB  running
big   a,b       o           572.2 MiB  512 MiB  stopped: over its memory budget
`, buf.String())
	buf.Reset()
	require.NoError(t, printJobs(&buf, []byte(`{"jobs":null}`)))
	require.Equal(t, "no jobs deployed (deploy one with 'millstream job deploy FILE')\n", buf.String())
}

// TestCLIVersion: the version line's format; the test binary may be
// built without VCS information, so the commit is checked on a made-up
// build.
func TestCLIVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "version")
	require.Equal(t, 0, code)
	line := regexp.MustCompile(`^millstream \S+( \((commit [0-9a-f]{7})?(, )?(\S+Z)?(, )?(modified)?\))? go\d+\.\d+\S*\n$`)
	require.Regexp(t, line, stdout)
	code, stdout2, _ := runCLI(t, "--version")
	require.Equal(t, 0, code)
	require.Equal(t, stdout, stdout2)

	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261205040000-abc1234def56+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc1234def5678"}, {Key: "vcs.time", Value: "2026-12-05T04:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	require.Equal(t, "v0.0.0-20261205040000-abc1234def56+dirty (commit abc1234, 2026-12-05T04:00:00Z, modified) go1.26.8", versionLine(bi))
	require.Regexp(t, line, "millstream "+versionLine(bi)+"\n")
	bi.Settings[2].Value = "false"
	require.Equal(t, "v0.0.0-20261205040000-abc1234def56+dirty (commit abc1234, 2026-12-05T04:00:00Z) go1.26.8", versionLine(bi))
	require.Equal(t, "dev go1.26.8", versionLine(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}))
	old := version
	t.Cleanup(func() { version = old })
	version = "v1.4.0"
	require.Equal(t, "v1.4.0 (commit abc1234, 2026-12-05T04:00:00Z) go1.26.8", versionLine(bi), "-ldflags -X main.version wins")
}

func TestCLICompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "__start_millstream",
		"zsh":        "#compdef millstream",
		"fish":       "complete -c millstream",
		"powershell": "Register-ArgumentCompleter",
	} {
		code, stdout, stderr := runCLI(t, "completion", shell)
		require.Equal(t, 0, code, "%s: %s", shell, stderr)
		require.Contains(t, stdout, want, shell)
	}
	// Flag values complete too.
	code, stdout, _ := runCLI(t, "__complete", "job", "list", "-o", "")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "text\njson\nyaml\n")
	code, stdout, _ = runCLI(t, "__complete", "j")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "job\t")
}

// TestCLIOneDashLongFlags: flags written for the standard flag package
// (-config, -admin=...) still work.
func TestCLIOneDashLongFlags(t *testing.T) {
	cfg := gatewayConfig(t, t.TempDir(), "")
	code, stdout, stderr := runCLI(t, "gateway", "-config", cfg, "-t")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "configuration is valid")
	code, stdout, stderr = runCLI(t, "gateway", "-t", "-config="+cfg, "-log-level", "warn")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "configuration is valid")
	// An argument that names no flag is left alone.
	code, _, stderr = runCLI(t, "gateway", "-t", "-nope", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "unknown shorthand flag: 'n' in -nope")
}

// TestCLIGatewayLogFlags: the gateway logs through internal/logging in
// the format and at the level asked for; bad values are usage errors.
func TestCLIGatewayLogFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := gatewayConfig(t, dir, "data_dir: "+dir+"\ndurability: {disabled: true}\n")
	for _, tc := range []struct{ flag, value, want string }{
		{"--log-level", "loud", `log level "loud": want debug, info, warn or error`},
		{"--log-format", "xml", `log format "xml": want text or json`},
	} {
		code, _, stderr := runCLI(t, "gateway", "--config", cfg, tc.flag, tc.value)
		require.Equal(t, 2, code, stderr)
		require.Contains(t, stderr, tc.want)
	}
	code, _, stderr := runCLI(t, "demo", "--log-level", "loud", "--duration", "1ms")
	require.Equal(t, 2, code, stderr)
	require.NoDirExists(t, "millstream-demo", "the demo started nothing")

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- runCtx(ctx, []string{"gateway", "--config", cfg, "--log-format", "json"}, io.Discard, &logs)
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "gateway started") }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.Equal(t, 0, <-done, logs.String())
	var started, stopped map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "not a JSON log line: %s", line)
		switch m["msg"] {
		case "gateway started":
			started = m
		case "gateway stopped":
			stopped = m
		}
	}
	require.Equal(t, "INFO", started["level"])
	require.Equal(t, "gw", started["name"])
	require.NotNil(t, stopped)
}
