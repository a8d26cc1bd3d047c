package config

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestJobFunctionsYAMLAndTextProto(t *testing.T) {
	y, err := ParseJob("job.yaml", []byte(`name: f
query: "SELECT udf.hex2Int(o) AS i, uda.total(v) AS t FROM e GROUP BY udf.hex2Int(o), TumblingWindow(second, 5)"
inputs: [{name: e, iothub_properties: true}]
outputs: [{name: output, log: {}}]
functions:
  - name: hex2Int
    code: "function main(h) { return parseInt(h, 16); }"
  - name: total
    kind: AGGREGATE
    timeout_ms: 50
    code: "function main() { this.init = function () { this.s = 0; }; this.accumulate = function (v) { this.s += v; }; this.computeResult = function () { return this.s; }; }"
`))
	require.NoError(t, err)
	tp, err := ParseJob("job.textproto", []byte(`name: "f"
query: "SELECT udf.hex2Int(o) AS i, uda.total(v) AS t FROM e GROUP BY udf.hex2Int(o), TumblingWindow(second, 5)"
inputs { name: "e" iothub_properties: true }
outputs { name: "output" log {} }
functions { name: "hex2Int" code: "function main(h) { return parseInt(h, 16); }" }
functions { name: "total" kind: AGGREGATE timeout_ms: 50
  code: "function main() { this.init = function () { this.s = 0; }; this.accumulate = function (v) { this.s += v; }; this.computeResult = function () { return this.s; }; }" }
`))
	require.NoError(t, err)
	require.True(t, proto.Equal(y, tp))
	p, err := JobPlan(y)
	require.NoError(t, err)
	require.Len(t, p.Functions, 2)
	require.True(t, p.Inputs[0].IothubProperties)
}

func TestJobFunctionErrors(t *testing.T) {
	for _, text := range []string{
		`{name: f, outputs: [{name: output, log: {}}], query: "SELECT udf.nope(x) FROM e"}`,
		`{name: f, outputs: [{name: output, log: {}}], query: "SELECT uda.s(x) FROM e GROUP BY TumblingWindow(second, 1)", functions: [{name: s, code: "function main(x) { return x; }"}]}`,
		`{name: f, outputs: [{name: output, log: {}}], query: "SELECT udf.s(x) FROM e", functions: [{name: s, code: "function main( {"}]}`,
		`{name: f, outputs: [{name: output, log: {}}], query: "SELECT udf.s(x) FROM e", functions: [{name: s, code: "function main() {}"}, {name: S, code: "function main() {}"}]}`,
	} {
		_, err := ParseJob("job.yaml", []byte(text))
		require.Error(t, err, text)
		require.True(t, errors.Is(err, ErrInvalid), "%s: %v", text, err)
	}
}
