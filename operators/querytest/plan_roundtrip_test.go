package querytest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestPlanTextRunsLikeSQL prints every plan as text proto (what `query
// explain` shows and what a user may write by hand), reads it back and
// checks that it produces exactly the rows of the SQL it came from.
func TestPlanTextRunsLikeSQL(t *testing.T) {
	dirs := []string{"../../deployments/jobs/temperature-filtering"}
	conf := conformanceDir(t)
	entries, err := os.ReadDir(conf)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(conf, e.Name()))
		}
	}
	ran := 0
	for _, dir := range dirs {
		c, err := Load(dir)
		require.NoError(t, err)
		p, files, opts, err := c.Prepare()
		if err != nil {
			continue
		}
		again, err := plan.FromSQL(c.Query)
		require.NoError(t, err)
		c.Configure(again)
		require.True(t, proto.Equal(p, again), "%s: planning is not deterministic", c.Name)

		text, err := prototext.MarshalOptions{Multiline: true}.Marshal(p)
		require.NoError(t, err)
		byHand := &pb.Plan{}
		require.NoError(t, prototext.Unmarshal(text, byHand))
		byHand.Query = "" // a hand-written plan has no SQL

		fromSQL, err := RunFiles(p, files, opts)
		require.NoError(t, err)
		fromText, err := RunFiles(byHand, files, opts)
		require.NoError(t, err)
		require.Equal(t, render(fromSQL), render(fromText), c.Name)
		ran++
	}
	require.Greater(t, ran, 30)
}

func render(r *Result) map[string][]string {
	out := map[string][]string{}
	for name, rows := range r.Outputs {
		for _, row := range rows {
			out[name] = append(out[name], string(value.AppendRecordJSON(nil, row)))
		}
	}
	return out
}
