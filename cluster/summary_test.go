package cluster

import (
	"log"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/logging/logtest"
)

// TestPartitionLogSummarisesARound: the changes of one round are one line
// per kind (and why), listing the partitions as ranges with the count and
// the longest time; a later round is a line of its own; flush writes what
// is pending at once.
func TestPartitionLogSummarisesARound(t *testing.T) {
	var buf logtest.Buffer
	l := newPartitionLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.quiet, l.maxWait = 50*time.Millisecond, time.Second
	for _, p := range []int{5, 0, 2, 1, 3, 9} {
		l.add("serving partitions", "why", "new partition", p, time.Duration(p)*time.Millisecond)
	}
	l.add("serving partitions", "why", "take-over", 7, 0)
	require.Empty(t, buf.Records(t), "a round is logged once it is quiet")
	require.Eventually(t, func() bool { return len(buf.Records(t)) == 2 }, 2*time.Second, 5*time.Millisecond)
	lines := buf.Records(t)
	byWhy := map[string]map[string]any{}
	for _, m := range lines {
		require.Equal(t, "serving partitions", m["msg"])
		require.Equal(t, "INFO", m["level"])
		byWhy[m["why"].(string)] = m
	}
	require.Equal(t, "0-3,5,9", byWhy["new partition"]["partitions"])
	require.Equal(t, 6.0, byWhy["new partition"]["count"])
	require.Equal(t, float64(9*time.Millisecond), byWhy["new partition"]["took_max"])
	require.Equal(t, "7", byWhy["take-over"]["partitions"])
	require.NotContains(t, byWhy["take-over"], "took_max")

	l.add("partitions handed off", "to", "gw3#x", 4, time.Millisecond)
	l.add("partitions handed off", "to", "gw3#x", 6, time.Millisecond)
	l.flush()
	lines = buf.Records(t)
	require.Len(t, lines, 3)
	require.Equal(t, "4,6", lines[2]["partitions"])
	require.Equal(t, "gw3#x", lines[2]["to"])
	time.Sleep(100 * time.Millisecond)
	require.Len(t, buf.Records(t), 3, "flushed batches are not logged again by their timer")
}

// TestPartitionLogBoundsARound: changes that keep coming are logged at
// least every maxWait (plus quiet), not held back for ever.
func TestPartitionLogBoundsARound(t *testing.T) {
	var buf logtest.Buffer
	l := newPartitionLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.quiet, l.maxWait = 100*time.Millisecond, 150*time.Millisecond
	start := time.Now()
	for p := 0; time.Since(start) < 400*time.Millisecond; p++ {
		l.add("serving partitions", "why", "hand-off", p, 0)
		time.Sleep(10 * time.Millisecond)
	}
	l.flush()
	n := len(buf.Records(t))
	require.GreaterOrEqual(t, n, 2, "one round held for 400 ms")
	require.LessOrEqual(t, n, 10, "about 40 changes, batched")
}

func TestPartitionList(t *testing.T) {
	require.Equal(t, "", partitionList(nil))
	require.Equal(t, "3", partitionList([]int{3}))
	require.Equal(t, "0-2,4,6-7", partitionList([]int{7, 6, 4, 2, 1, 0}))
	require.Equal(t, "1-2", partitionList([]int{2, 1, 2}), "a partition changed twice in a round")
}

// TestMemberlistLines: memberlist's lines come at the level their prefix
// names, without the prefix, with component=gossip.
func TestMemberlistLines(t *testing.T) {
	var buf logtest.Buffer
	l := log.New(slogWriter{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "gossip")}, "", 0)
	l.Printf("[WARN] memberlist: Was able to connect to gw2 over TCP but UDP probes failed")
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:5000")
	l.Printf("[INFO] memberlist: Suspect gw3 has failed, no acks received")
	l.Printf("[ERR] memberlist: Failed to send ping: write: broken pipe")
	l.Printf("no prefix")
	lines := buf.Records(t)
	require.Len(t, lines, 5)
	want := []struct{ level, msg string }{
		{"WARN", "Was able to connect to gw2 over TCP but UDP probes failed"},
		{"DEBUG", "Stream connection from=127.0.0.1:5000"},
		{"INFO", "Suspect gw3 has failed, no acks received"},
		{"ERROR", "Failed to send ping: write: broken pipe"},
		{"DEBUG", "no prefix"},
	}
	for i, w := range want {
		require.Equal(t, w.level, lines[i]["level"], i)
		require.Equal(t, w.msg, lines[i]["msg"], i)
		require.Equal(t, "gossip", lines[i]["component"])
	}
}
