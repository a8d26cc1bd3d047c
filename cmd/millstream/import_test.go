package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/testutil"
)

const importDir = "testdata/import"

// TestImportEdgeTemplate: an exported Stream Analytics Edge job (ARM
// template with parameters, inputs inline, outputs as child resources, a
// JavaScript function) becomes the job file in testdata (set
// MILLSTREAM_REWRITE=1 to rewrite it), with a note for each choice to check.
func TestImportEdgeTemplate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "job.yaml")
	code, stdout, stderr := runCLI(t, "import", filepath.Join(importDir, "edge-job.template.json"), "--out", out)
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stdout)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	golden := filepath.Join(importDir, "edge-job.yaml")
	if os.Getenv("MILLSTREAM_REWRITE") != "" {
		require.NoError(t, os.WriteFile(golden, got, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	for _, n := range []string{
		"input SensorLimits: reference data (Microsoft.Storage/Blob) is read from data/reference/SensorLimits.json",
		"output Archive: Microsoft.Storage/Blob has no edge equivalent",
		"output CloudOutput: Microsoft.ServiceBus/EventHub becomes MQTT topic millstream/temperature-monitoring-edge/CloudOutput",
		"function udf.toFahrenheit (Microsoft.StreamAnalytics/JavascriptUdf) is not imported",
	} {
		require.Contains(t, stderr, n)
	}
	job, err := config.ParseJob("job.yaml", got)
	require.NoError(t, err)
	require.Equal(t, "temperature-monitoring-edge", job.Name)
	require.Equal(t, 5*time.Second, job.Policy.LateArrivalTolerance.AsDuration())
	require.Equal(t, 2*time.Second, job.Policy.OutOfOrderTolerance.AsDuration())
	require.Equal(t, "adjust", job.Policy.OutOfOrderPolicy)

	// Parameters from a parameters file win over the template's defaults,
	// and --topic sets where a stream input reads.
	params := filepath.Join(t.TempDir(), "params.json")
	require.NoError(t, os.WriteFile(params, []byte(`{"parameters": {"StreamAnalyticsJobName": {"value": "Line7 Monitor"}}}`), 0o644))
	code, stdout, stderr = runCLI(t, "import", filepath.Join(importDir, "edge-job.template.json"), "--parameters", params,
		"--topic", "iothubinput=plant/+/telemetry")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "name: line7-monitor\n")
	require.Contains(t, stdout, `{name: IotHubInput, topic: "plant/+/telemetry"}`)
}

// TestImportRefusals: what import cannot take gets an error that says why,
// and a query that does not compile here is written anyway and reported
// with its line and column.
func TestImportRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	for _, c := range []struct {
		name, body string
		args       []string
		code       int
		err        string
	}{
		{"notjson", `{"resources": [`, nil, 1, "not JSON"},
		{"nojob", `{"resources": [{"type": "Microsoft.Storage/storageAccounts", "name": "x"}]}`, nil, 1, "no Microsoft.StreamAnalytics/streamingjobs resource"},
		{"noquery", `{"name": "j", "properties": {"inputs": []}}`, nil, 1, "the job has no transformation query"},
		{"topic", `{"name": "j", "properties": {"transformation": {"properties": {"query": "SELECT * INTO o FROM i"}}}}`, []string{"--topic", "nosuch=a/b"}, 2, `the job has no input "nosuch"`},
		{"topicform", `{"name": "j", "properties": {"transformation": {"properties": {"query": "SELECT * INTO o FROM i"}}}}`, []string{"--topic", "nosuch"}, 2, "want INPUT=FILTER"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"import", write(c.name+".json", c.body)}, c.args...)...)
			require.Equal(t, c.code, code, stderr)
			require.Contains(t, stderr, c.err)
		})
	}
	out := filepath.Join(dir, "bad.yaml")
	code, _, stderr := runCLI(t, "import", filepath.Join(importDir, "bad-query.template.json"), "--out", out)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "line 8, column 6")
	require.FileExists(t, out, "written, to be edited")
}

// TestImportedJobRunsOnAGateway: the imported job, with its reference data
// copied where the note says (under the gateway's data_dir),
// is deployed with `millstream job deploy` to a running gateway and joins
// the readings with the reference data, as the Stream Analytics job did.
func TestImportedJobRunsOnAGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway process; runs without -short")
	}
	dir := t.TempDir()
	code, jobYAML, stderr := runCLI(t, "import", filepath.Join(importDir, "edge-job.template.json"))
	require.Equal(t, 0, code, stderr)
	ref := filepath.Join(dir, "data", "reference", "SensorLimits.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(ref), 0o755))
	require.NoError(t, os.WriteFile(ref, []byte(`[{"deviceId":"press-1","maxTemp":90},{"deviceId":"press-2","maxTemp":120}]`), 0o644))
	// The gateway runs elsewhere than the default ./data: the paths follow
	// its data_dir, as the notes say.
	jobYAML = strings.ReplaceAll(jobYAML, "data/", filepath.Join(dir, "data")+"/")
	jobFile := filepath.Join(dir, "job.yaml")
	require.NoError(t, os.WriteFile(jobFile, []byte(jobYAML), 0o644))

	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("name: imported\nmqtt_listen: %s\nhttp_listen: %s\ndata_dir: %s\npartitions: 4\n",
		mqtt, admin, filepath.Join(dir, "data"))), 0o644))
	testutil.StartGateway(t, cfg, admin)
	code, _, stderr = runCLI(t, "job", "deploy", jobFile, "--admin", admin)
	require.Equal(t, 0, code, stderr)

	var mu sync.Mutex
	var alerts []map[string]any
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("actuator"))
	tok := sub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer sub.Disconnect(100)
	tok = sub.Subscribe("millstream/temperature-monitoring-edge/LocalActuator", 1, func(_ paho.Client, m paho.Message) {
		var row map[string]any
		if json.Unmarshal(m.Payload(), &row) == nil {
			mu.Lock()
			alerts = append(alerts, row)
			mu.Unlock()
		}
	})
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("edge-device"))
	tok = pub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer pub.Disconnect(100)
	for _, r := range []struct {
		dev  string
		temp int
	}{{"press-1", 95}, {"press-2", 95}, {"press-2", 125}, {"press-1", 80}} {
		// IoT Hub's topic, with a property bag level as Edge hub devices send.
		tok := pub.Publish("devices/"+r.dev+"/messages/events/line=7", 1, false, fmt.Sprintf(`{"deviceId":%q,"temperature":%d}`, r.dev, r.temp))
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(alerts) >= 2 }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, alerts, 2, "%v", alerts)
	got := map[string]float64{}
	for _, a := range alerts {
		got[a["deviceId"].(string)] = a["temperature"].(float64)
	}
	require.Equal(t, map[string]float64{"press-1": 95, "press-2": 125}, got, "readings over their device's limit")
}
