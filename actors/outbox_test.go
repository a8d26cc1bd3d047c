package actors

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// upstreamHTTP is an HTTP receiver that can be taken offline (503) and
// refuses rows holding "poison" for good (400).
type upstreamHTTP struct {
	mu       sync.Mutex
	online   bool
	rows     []map[string]any
	requests int
	srv      *httptest.Server
}

func newUpstreamHTTP(t *testing.T, online bool) *upstreamHTTP {
	u := &upstreamHTTP{online: online}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		defer u.mu.Unlock()
		u.requests++
		if !u.online {
			http.Error(w, "offline", http.StatusServiceUnavailable)
			return
		}
		if strings.Contains(string(body), "poison") {
			http.Error(w, "refused", http.StatusBadRequest)
			return
		}
		var rows []map[string]any
		if err := json.Unmarshal(body, &rows); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.rows = append(u.rows, rows...)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstreamHTTP) setOnline(on bool) {
	u.mu.Lock()
	u.online = on
	u.mu.Unlock()
}

func (u *upstreamHTTP) requestCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests
}

func (u *upstreamHTTP) received() []map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]map[string]any(nil), u.rows...)
}

// bothModes runs a test on a durable gateway and on one in memory: rows
// take the same path through the outbox in both.
func bothModes(t *testing.T, test func(t *testing.T, memory bool)) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) { test(t, memory) })
	}
}

// forwardJob forwards every row of input readings to the HTTP receiver,
// through the store's outbox or (memory) one in memory.
func forwardJob(t *testing.T, memory bool, url, delivery string) *durableJob {
	t.Helper()
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: pass
query: SELECT deviceId, n, note INTO out FROM readings
inputs: [{name: readings}]
outputs:
  - name: out
    http: {url: %q}
    delivery: %s
`, url, delivery)))
	require.NoError(t, err)
	cfg := Config{Partitions: 2, Tick: time.Hour, SyncInterval: time.Microsecond}
	var d *durableGateway
	if memory {
		d = openMemory(t, job, cfg)
	} else {
		d = openDurable(t, t.TempDir(), job, cfg)
	}
	t.Cleanup(func() { d.close(t) })
	return &durableJob{durableGateway: d}
}

type durableJob struct{ *durableGateway }

func (d *durableJob) send(n int, note string) error {
	return d.g.Ingest("readings", "dev-1", []byte(fmt.Sprintf(`{"deviceId":"dev-1","n":%d,"note":%q}`, n, note)))
}

// sendAll sends readings 0 to n-1 and drains.
func (d *durableJob) sendAll(t *testing.T, n int) {
	for i := 0; i < n; i++ {
		require.NoError(t, d.send(i, "ok"))
	}
	d.drain(t)
}

// drain waits until the rows of what was sent are in the outbox.
func (d *durableJob) drain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.g.Drain(ctx))
}

func (d *durableJob) status(t *testing.T) OutputStatus {
	st := d.outs.Status()
	require.Len(t, st, 1)
	return st[0]
}

// ns returns the "n" of each row.
func ns(rows []map[string]any) []int {
	out := make([]int, len(rows))
	for i, r := range rows {
		out[i] = int(r["n"].(float64))
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestOutboxStoreAndForward: while the receiver is down rows wait in the
// outbox and delivery is retried with backoff; when it is back every row
// arrives once, in order, and the backlog is 0. A row the receiver refuses
// for good goes to dead letter without blocking the rows behind it.
func TestOutboxStoreAndForward(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{retry_min: 0.01s, retry_max: 0.05s, batch_size: 7}")
		for i := 0; i < 200; i++ {
			note := "ok"
			if i == 77 {
				note = "poison"
			}
			require.NoError(t, d.send(i, note))
		}
		require.Eventually(t, func() bool { st := d.status(t); return st.Retries >= 3 && st.Backlog == 200 }, 10*time.Second, 5*time.Millisecond,
			"rows wait while the receiver is down: %+v", d.status(t))
		st := d.status(t)
		require.NotEmpty(t, st.LastError)
		require.Empty(t, up.received())

		up.setOnline(true)
		require.Eventually(t, func() bool { return d.status(t).Backlog == 0 }, 10*time.Second, 5*time.Millisecond)
		want := append(seq(0, 77), seq(78, 200)...)
		require.Equal(t, want, ns(up.received()), "every row once, in order, except the refused one")
		st = d.status(t)
		require.Equal(t, uint64(199), st.Delivered)
		require.Equal(t, int64(1), st.DeadLettered)
		dead, err := d.outs.Outbox().DeadLetters("pass/out", 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		require.Contains(t, string(dead[0].Entry.Payload), `"n":77`)
	})
}

// TestOutboxQuotaRejectsInput: with when_full: reject, a full outbox makes
// the gateway refuse input (counted) and keep serving; once the receiver
// drains it, input is accepted again and nothing accepted was lost.
func TestOutboxQuotaRejectsInput(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{quota_bytes: 4000, when_full: reject, retry_min: 0.01s, retry_max: 0.02s}")
		accepted := 0
		for i := 0; i < 1000 && accepted < 1000; i++ {
			err := d.send(accepted, "ok")
			if errors.Is(err, ErrOverQuota) {
				break
			}
			require.NoError(t, err)
			accepted++
			if accepted%10 == 0 {
				time.Sleep(2 * time.Millisecond) // let the drainer see the quota
			}
		}
		require.Eventually(t, func() bool { return errors.Is(d.send(accepted, "ok"), ErrOverQuota) }, 5*time.Second, 5*time.Millisecond)
		require.Less(t, accepted, 1000, "the quota was never applied")
		require.Positive(t, d.g.DurableStats().RefusedOverQuota)
		require.True(t, d.status(t).Full)
		_, err := d.g.Devices(context.Background())
		require.NoError(t, err, "the gateway keeps serving")

		up.setOnline(true)
		require.Eventually(t, func() bool { return d.status(t).Backlog == 0 && !d.status(t).Full }, 10*time.Second, 5*time.Millisecond)
		require.NoError(t, d.send(accepted, "ok"))
		accepted++
		require.Eventually(t, func() bool { return len(up.received()) == accepted }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, seq(0, accepted), ns(up.received()))
	})
}

// TestOutboxQuotaDropsOldest: with when_full: drop_oldest the oldest rows
// make room, each drop counted; the newest rows are delivered.
func TestOutboxQuotaDropsOldest(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{quota_bytes: 4000, when_full: drop_oldest, retry_min: 0.01s, retry_max: 0.02s}")
		// Every row in its outbox before the checks: in memory, send
		// returns before the partition has run the event (the test read
		// an empty backlog while the partition still worked, under -race).
		d.sendAll(t, 500)
		require.Eventually(t, func() bool {
			st := d.status(t)
			return st.Dropped > 0 && st.BacklogBytes <= 4000
		}, 5*time.Second, 5*time.Millisecond)
		up.setOnline(true)
		require.Eventually(t, func() bool { return d.status(t).Backlog == 0 }, 10*time.Second, 5*time.Millisecond)
		st := d.status(t)
		got := ns(up.received())
		require.Equal(t, 500, int(st.Dropped)+len(got), "every row is delivered or counted as dropped: %+v, got %v", st, got)
		require.Equal(t, seq(500-len(got), 500), got, "the newest rows survive, in order")
	})
}

// TestOutboxExpiresRows: rows older than their time-to-live are dropped
// and counted, also while the receiver is unreachable.
func TestOutboxExpiresRows(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{ttl: 0.2s, retry_min: 0.01s, retry_max: 0.02s}")
		for i := 0; i < 50; i++ {
			require.NoError(t, d.send(i, "ok"))
		}
		require.Eventually(t, func() bool { return d.status(t).Expired == 50 }, 5*time.Second, 5*time.Millisecond, "%+v", d.status(t))
		require.Zero(t, d.status(t).Backlog)
		up.setOnline(true)
		require.NoError(t, d.send(50, "ok"))
		require.Eventually(t, func() bool { return len(up.received()) == 1 }, 5*time.Second, 5*time.Millisecond, "%+v", d.status(t))
		require.Equal(t, []int{50}, ns(up.received()))
	})
}

// TestOutboxLiveFirst: with live_first, fresh rows go out ahead of an old
// backlog, and the backlog still drains completely.
func TestOutboxLiveFirst(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{live_first: true, batch_size: 10, retry_min: 0.01s, retry_max: 0.02s}")
		d.sendAll(t, 300)
		// A request the drainer sent before the last rows were in may
		// still be on its way and reach the receiver once it is back (the
		// first batch was 246-255 or 288-297 in 4 of 35 runs under
		// -race): the receiver comes back after two more refused
		// attempts, the second of them made with every row in the outbox.
		r0 := up.requestCount()
		require.Eventually(t, func() bool { return up.requestCount() >= r0+2 }, 10*time.Second, time.Millisecond)
		up.setOnline(true)
		require.Eventually(t, func() bool { return d.status(t).Backlog == 0 }, 10*time.Second, 5*time.Millisecond)
		got := ns(up.received())
		require.ElementsMatch(t, seq(0, 300), got, "every row once")
		require.Equal(t, seq(290, 300), got[:10], "the newest rows first")
	})
}

// TestOutboxReconfigureWhileAbandoning: reconfiguring a job stops and
// restarts its drainers while they read the marks of abandoned partitions;
// neither side may wait on the other (a CI run once hung here for ten
// minutes: Configure held the outputs' lock while the old drainer waited
// for it).
func TestOutboxReconfigureWhileAbandoning(t *testing.T) {
	bothModes(t, func(t *testing.T, memory bool) {
		up := newUpstreamHTTP(t, false)
		d := forwardJob(t, memory, up.srv.URL, "{retry_min: 0.0001s, retry_max: 0.0002s}")
		d.sendAll(t, 50)
		job, _, ok := d.g.Job("pass")
		require.True(t, ok)
		done := make(chan error, 1)
		go func() {
			for i := 0; i < 300; i++ {
				d.outs.Abandon(7) // a partition with no rows: the marks are read, nothing is dropped
				if err := d.outs.Configure(job); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Configure and a drainer wait on each other")
		}
		up.setOnline(true)
		require.Eventually(t, func() bool { return d.status(t).Backlog == 0 }, 10*time.Second, 5*time.Millisecond)
		// A drainer stopped mid-request cancels it, but the receiver may still
		// take it in: HTTP delivery is at least once, rows carry "_id".
		var first []int
		seen := map[int]bool{}
		for _, n := range ns(up.received()) {
			if !seen[n] {
				seen[n] = true
				first = append(first, n)
			}
		}
		require.Equal(t, seq(0, 50), first, "every row, in order")
	})
}

// TestOutboxDiskShrinks: once a large backlog is delivered, the store gives
// the disk space back.
func TestOutboxDiskShrinks(t *testing.T) {
	up := newUpstreamHTTP(t, false)
	d := forwardJob(t, false, up.srv.URL, "{retry_min: 0.01s, retry_max: 0.02s, batch_size: 200}")
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		note := make([]byte, 4<<10) // 8 KiB of hex: incompressible
		for k := range note {
			note[k] = byte(rnd.Uint32())
		}
		require.NoError(t, d.send(i, hex.EncodeToString(note)))
	}
	require.Eventually(t, func() bool { return d.status(t).Backlog == 3000 }, 10*time.Second, 5*time.Millisecond)
	// The ingest log holds the same bytes until a checkpoint covers it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.g.Checkpoint(ctx))
	require.NoError(t, d.store.Flush())
	full := dirSize(t, d.dir, ".sst")
	require.Greater(t, full, uint64(12<<20), "the backlog is on disk")
	up.setOnline(true)
	require.Eventually(t, func() bool { return d.status(t).Backlog == 0 }, 20*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		require.NoError(t, d.store.Flush())
		return dirSize(t, d.dir, ".sst") < full/10
	}, 20*time.Second, 50*time.Millisecond, "tables stayed at %d bytes after delivery (were %d)\n%s", dirSize(t, d.dir, ".sst"), full, listDir(d.dir))
	// Pebble keeps write-ahead log files for reuse, at most one per
	// memtable it may hold (MemTableStopWritesThreshold 4, 16 MiB each):
	// bounded by the memtable size, not by the backlog.
	require.LessOrEqual(t, dirSize(t, d.dir, ".log"), uint64(4*16<<20)+1<<20)
	require.Len(t, up.received(), 3000)
}

func listDir(dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			info, _ := e.Info()
			fmt.Fprintf(&b, "%s %d\n", path, info.Size())
		}
		return nil
	})
	return b.String()
}

// dirSize is the bytes the files under dir with the suffix take.
func dirSize(t *testing.T, dir, suffix string) uint64 {
	var n uint64
	require.NoError(t, filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // Pebble deleted it meanwhile (a compaction)
		}
		if err != nil || e.IsDir() || !strings.HasSuffix(path, suffix) {
			return err
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			n += uint64(info.Size())
		}
		return err
	}))
	return n
}

// TestFileSinkCutsPartialRow: a file output whose last row was cut short
// by a crash is opened with that part removed, so the file stays one JSON
// row per line; the row, sent again from the outbox, is written whole,
// once, and rows already in the file are not written twice.
func TestFileSinkCutsPartialRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	row := func(id string, n int) []byte {
		return []byte(fmt.Sprintf(`{"_id":%q,"n":%d}`, id, n))
	}
	whole := append(append(row("00000000000000a1", 1), '\n'), append(row("00000000000000a2", 2), '\n')...)
	partial := row("00000000000000a3", 3)[:30] // the id is whole, the row is not
	require.NoError(t, os.WriteFile(path, append(append([]byte{}, whole...), partial...), 0o644))

	s, err := newFileSink(path, 0)
	require.NoError(t, err)
	require.EqualValues(t, len(partial), s.cut)
	n, err := s.deliver(t.Context(), []*pb.OutboxEntry{
		{Id: "00000000000000a2", Payload: row("00000000000000a2", 2)},
		{Id: "00000000000000a3", Payload: row("00000000000000a3", 3)},
		{Id: "00000000000000a4", Payload: row("00000000000000a4", 4)},
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.NoError(t, s.close())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var ns []float64
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "line %q", line)
		ns = append(ns, m["n"].(float64))
	}
	require.Equal(t, []float64{1, 2, 3, 4}, ns)
}

// TestMemoryFileOutputAcrossRestarts: an in-memory gateway started again
// on the same file output appends every row of the new run, even rows
// equal to the first run's at the same time: a file output skips rows
// whose ids are at its end (resends after a crash), so ids of a new
// process must not repeat an earlier one's.
func TestMemoryFileOutputAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: pass
query: SELECT v INTO out FROM readings
inputs: [{name: readings}]
outputs: [{name: out, file: {path: %q}}]
`, path)))
	require.NoError(t, err)
	clock := &testClock{}
	clock.t.Store(1_000_000)
	for run := 0; run < 2; run++ {
		d := openMemory(t, job, Config{Partitions: 2, Tick: time.Hour, Now: clock.now})
		for i := 0; i < 5; i++ {
			require.NoError(t, d.g.Ingest("readings", "dev-1", []byte(fmt.Sprintf(`{"v":%d}`, i))))
		}
		d.close(t)
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 10)
	ids := map[string]bool{}
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		ids[m["_id"].(string)] = true
	}
	require.Len(t, ids, 10, "every row has its own id")
}
