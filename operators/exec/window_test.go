package exec_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/value"
)

var base = value.FromTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

// at returns base + s seconds in ticks.
func at(s float64) int64 { return base + int64(s*float64(value.TicksPerSecond)) }

// ev builds an event with field t = base + s seconds and extra JSON fields.
func ev(s float64, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"t":"%s"%s}`, value.FormatTicks(at(s)), extra)
}

type harness struct {
	t    *testing.T
	ex   *exec.Executor
	rows []string
	dead []exec.DeadLetter
}

func newHarness(t *testing.T, query string, opts exec.Options) *harness {
	t.Helper()
	p, err := plan.FromSQL(query)
	require.NoError(t, err)
	h := &harness{t: t}
	opts.Emit = func(_ string, ts int64, rec *value.Record) {
		secs := float64(ts-base) / float64(value.TicksPerSecond)
		h.rows = append(h.rows, fmt.Sprintf("%g %s", secs, value.AppendRecordJSON(nil, rec)))
	}
	opts.DeadLetter = func(dl exec.DeadLetter) { h.dead = append(h.dead, dl) }
	h.ex, err = exec.New(p, opts)
	require.NoError(t, err)
	return h
}

func (h *harness) feed(events ...string) *harness {
	for _, e := range events {
		require.NoError(h.t, h.ex.Ingest("i", []byte(e), exec.ArrivalIsEventTime))
	}
	return h
}

func (h *harness) flush() []string {
	h.ex.Flush()
	return h.rows
}

func TestExecWindowHopping(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n, COUNT(DISTINCT k) AS d FROM i TIMESTAMP BY t
		GROUP BY HoppingWindow(second, 10, 5)`, exec.Options{})
	got := h.feed(ev(1, `"k":1`), ev(6, `"k":1`), ev(12, `"k":2`)).flush()
	require.Equal(t, []string{
		`5 {"n":1,"d":1}`,
		`10 {"n":2,"d":1}`,
		`15 {"n":2,"d":2}`,
		`20 {"n":1,"d":1}`,
	}, got)
}

func TestExecWindowTumblingOffset(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10, 2)`, exec.Options{})
	got := h.feed(ev(1, ""), ev(2, ""), ev(3, ""), ev(12.5, "")).flush()
	require.Equal(t, []string{`2 {"n":2}`, `12 {"n":1}`, `22 {"n":1}`}, got)
}

func TestExecWindowTumblingDurationForm(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n FROM i TIMESTAMP BY t
		GROUP BY TumblingWindow(Duration(second, 10), Offset(millisecond, -1))`, exec.Options{})
	// Offset -1 ms makes windows start-inclusive, [0 s, 10 s): an event at
	// exactly 10 s opens the next window.
	got := h.feed(ev(0, ""), ev(9.999, ""), ev(10, "")).flush()
	require.Equal(t, []string{`9.999 {"n":2}`, `19.999 {"n":1}`}, got)
}

func TestExecWindowSliding(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n, MAX(v) AS mx FROM i TIMESTAMP BY t GROUP BY SlidingWindow(second, 10)`, exec.Options{})
	got := h.feed(ev(1, `"v":3`), ev(5, `"v":9`), ev(12, `"v":4`)).flush()
	require.Equal(t, []string{
		`1 {"n":1,"mx":3}`,
		`5 {"n":2,"mx":9}`,
		`11 {"n":1,"mx":9}`,
		`12 {"n":2,"mx":9}`,
		`15 {"n":1,"mx":4}`,
	}, got)
}

func TestExecWindowSessionTimeoutAndMaxDuration(t *testing.T) {
	q := `SELECT COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY SessionWindow(second, 5, 10)`
	got := newHarness(t, q, exec.Options{}).feed(ev(1, ""), ev(4, ""), ev(8, ""), ev(12, ""), ev(14, ""), ev(30, "")).flush()
	require.Equal(t, []string{`19 {"n":5}`, `35 {"n":1}`}, got, "closed by the timeout")

	var events []string
	for s := 1.0; s <= 28; s += 3 {
		events = append(events, ev(s, ""))
	}
	got = newHarness(t, q, exec.Options{}).feed(events...).flush()
	require.Equal(t, []string{`20 {"n":7}`, `33 {"n":3}`}, got, "closed at the max-duration check point 20 (start 1 + 10 exceeded)")
}

func TestExecWindowSessionPartitionBy(t *testing.T) {
	q := `SELECT k, COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY k, SessionWindow(second, 5, 60) OVER (PARTITION BY k)`
	got := newHarness(t, q, exec.Options{}).feed(ev(1, `"k":"a"`), ev(2, `"k":"b"`), ev(5, `"k":"a"`), ev(9, `"k":"b"`)).flush()
	require.ElementsMatch(t, []string{`7 {"k":"b","n":1}`, `10 {"k":"a","n":2}`, `14 {"k":"b","n":1}`}, got)
}

func TestExecWindowEmitsOnWatermarkNotFlush(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`, exec.Options{})
	require.NoError(t, h.ex.Ingest("i", []byte(ev(1, "")), at(1)))
	h.ex.AdvanceTime(at(14)) // watermark = 14 - 5 s late tolerance = 9: window (0,10] still open
	require.Empty(t, h.rows)
	h.ex.AdvanceTime(at(15.1)) // watermark 10.1 > 10
	require.Equal(t, []string{`10 {"n":1}`}, h.rows)
	h.ex.Flush()
	require.Len(t, h.rows, 1, "a window is emitted exactly once")
}

func TestExecEventPoliciesDropAndCount(t *testing.T) {
	h := newHarness(t, `SELECT v FROM i TIMESTAMP BY t`, exec.Options{
		OutOfOrderPolicy:    exec.Drop,
		OutOfOrderTolerance: 0,
	})
	ingest := func(s float64, v int, arrival float64) {
		require.NoError(t, h.ex.Ingest("i", []byte(ev(s, fmt.Sprintf(`"v":%d`, v))), at(arrival)))
	}
	ingest(10, 1, 10)  // on time
	ingest(2, 2, 11)   // older than arrival - 5 s: late, dropped
	ingest(8, 3, 12)   // within late tolerance but below the watermark 10: out of order, dropped
	ingest(400, 4, 12) // more than 5 minutes ahead of arrival: early, dropped
	ingest(12, 5, 13)
	got := h.flush()
	require.Equal(t, []string{`10 {"v":1}`, `12 {"v":5}`}, got)
	c := h.ex.Counters()
	require.Equal(t, uint64(1), c.LateDropped)
	require.Equal(t, uint64(1), c.OutOfOrderDropped)
	require.Equal(t, uint64(1), c.EarlyDropped)
	require.Equal(t, uint64(5), c.EventsIn)
	require.Equal(t, uint64(2), c.EventsOut)
}

func TestExecOutOfOrderToleranceReorders(t *testing.T) {
	h := newHarness(t, `SELECT v FROM i TIMESTAMP BY t`, exec.Options{OutOfOrderTolerance: 5 * time.Second})
	h.feed(ev(10, `"v":1`), ev(7, `"v":2`), ev(12, `"v":3`), ev(3, `"v":4`))
	got := h.flush()
	// 7 is within the 5 s tolerance and is reordered; 3 is below the
	// watermark 12-5 = 7 and is adjusted to 7, after the rows released so far.
	require.Equal(t, []string{`7 {"v":2}`, `7 {"v":4}`, `10 {"v":1}`, `12 {"v":3}`}, got)
	require.Equal(t, uint64(1), h.ex.Counters().OutOfOrderAdjusted)
}

func TestExecBadInputIsDeadLetteredAndCounted(t *testing.T) {
	h := newHarness(t, `SELECT deviceId, temperature FROM i TIMESTAMP BY t WHERE temperature > 70`, exec.Options{})
	h.feed(
		ev(1, `"deviceId":"a","temperature":75`),
		`{"deviceId":"b","temperature":`,                    // truncated JSON
		ev(2, `"deviceId":"c","temperature":"hot"`),         // wrong type for > 70
		`{"deviceId":"d","temperature":90,"t":"yesterday"}`, // not a datetime
		`{"deviceId":"e","temperature":90}`,                 // no timestamp
		`[1,2,3]`,                                           // not an object
		ev(3, `"deviceId":"f","temperature":71.5`),
	)
	got := h.flush()
	require.Equal(t, []string{`1 {"deviceId":"a","temperature":75}`, `3 {"deviceId":"f","temperature":71.5}`}, got)
	require.Len(t, h.dead, 5)
	require.Equal(t, uint64(5), h.ex.Counters().DeadLettered)
	reasons := make([]string, len(h.dead))
	for i, d := range h.dead {
		reasons[i] = d.Reason
		require.NotEmpty(t, d.Payload)
	}
	require.Contains(t, reasons[0], "invalid JSON")
	require.Contains(t, reasons[1], "WHERE")
	require.Equal(t, "select1", h.dead[1].Stage)
	require.Contains(t, reasons[2], "TIMESTAMP BY")
	require.Contains(t, reasons[3], "NULL")
	require.Contains(t, reasons[4], "expected a JSON object")
}

func TestExecAggregateTypeErrorDoesNotCorruptGroup(t *testing.T) {
	h := newHarness(t, `SELECT COUNT(*) AS n, SUM(v) AS s FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`, exec.Options{})
	got := h.feed(ev(1, `"v":1`), ev(2, `"v":"x"`), ev(3, `"v":"2.5"`), ev(4, `"v":null`)).flush()
	// "x" is rejected whole (not counted by COUNT(*) either); "2.5" is cast
	// to float as Stream Analytics does; NULL is skipped by SUM only.
	require.Equal(t, []string{`10 {"n":3,"s":3.5}`}, got)
	require.Len(t, h.dead, 1)
}

func TestExecSelectStarLeftWinsAndLowerCase(t *testing.T) {
	h := newHarness(t, `SELECT 'x' AS Make, * FROM i TIMESTAMP BY t`, exec.Options{CompatLevel: "1.0"})
	got := h.feed(ev(1, `"Make":"m","Speed":3`)).flush()
	require.Equal(t, []string{`1 {"make":"x","t":"` + value.FormatTicks(at(1)) + `","speed":3}`}, got)
}

func TestExecUnknownInput(t *testing.T) {
	h := newHarness(t, `SELECT * FROM i`, exec.Options{})
	err := h.ex.Ingest("nope", []byte(`{}`), at(0))
	require.ErrorIs(t, err, exec.ErrUnknownInput)
	require.Contains(t, err.Error(), `"nope" (the query reads i)`)
	require.True(t, h.ex.Reads("I"), "input names are case-insensitive")
	require.False(t, h.ex.Reads("nope"))
	// Gateways ask every job about every event's input: no garbage.
	require.Zero(t, testing.AllocsPerRun(100, func() { h.ex.Reads("nope"); h.ex.Reads("I") }))
}

// Fields read only inside an analytic function or an APPLY must survive
// projection pushdown.
func TestExecPushdownKeepsFieldsOfEveryClause(t *testing.T) {
	h := newHarness(t, `SELECT x, e.ArrayValue AS v FROM i TIMESTAMP BY t
		CROSS APPLY GetArrayElements(arr) AS e
		WHERE LAG(y) OVER (LIMIT DURATION(hour, 1)) > 1`, exec.Options{})
	got := h.feed(ev(1, `"x":1,"y":5,"arr":[7]`), ev(2, `"x":2,"y":0,"arr":[8,9]`)).flush()
	require.Equal(t, []string{`2 {"x":2,"v":8}`, `2 {"x":2,"v":9}`}, got)
}

func TestExecStreamLeftJoinEmitsUnmatchedAtBound(t *testing.T) {
	h := newHarness(t, `SELECT l.id, r.id AS rid, System.Timestamp() AS at
		FROM l TIMESTAMP BY t LEFT JOIN r TIMESTAMP BY t
		ON l.id = r.id AND DATEDIFF(second, l, r) BETWEEN 0 AND 10`, exec.Options{})
	for _, e := range []struct {
		in string
		s  float64
		id int
	}{{"l", 1, 1}, {"l", 2, 2}, {"r", 5, 1}, {"l", 6, 3}, {"r", 7, 3}, {"r", 20, 2}} {
		require.NoError(t, h.ex.Ingest(e.in, []byte(ev(e.s, fmt.Sprintf(`"id":%d`, e.id))), exec.ArrivalIsEventTime))
	}
	got := h.flush()
	// 1 matches at 5; 3 matches at 7; 2's partner comes 18 s later, past the
	// bound, so 2 is emitted alone at 2 + 10 s, in time order.
	require.Equal(t, []string{
		`5 {"id":1,"rid":1,"at":"` + value.FormatTicks(at(5)) + `"}`,
		`7 {"id":3,"rid":3,"at":"` + value.FormatTicks(at(7)) + `"}`,
		`12 {"id":2,"rid":null,"at":"` + value.FormatTicks(at(12)) + `"}`,
	}, got)
}

// A chain of joins: the second join's DATEDIFF names the first source, so
// it must read that source's own time (2 s), not the joined row's (4 s);
// the joined rows' time fields never reach the output.
func TestExecJoinChainReadsEachAliasTime(t *testing.T) {
	const from = ` FROM a TIMESTAMP BY t
		JOIN b TIMESTAMP BY t ON DATEDIFF(second, a, b) BETWEEN 0 AND 5 AND a.id = b.id
		LEFT JOIN c TIMESTAMP BY t ON DATEDIFF(second, a, c) BETWEEN 0 AND 10 AND c.id = a.id`
	run := func(query string) []string {
		h := newHarness(t, query, exec.Options{})
		for _, e := range []struct {
			in, extra string
			s         float64
		}{{"a", `"id":1`, 1}, {"a", `"id":2`, 2}, {"b", `"id":1,"x":"b1"`, 3}, {"b", `"id":2,"x":"b2"`, 4},
			{"c", `"id":1,"y":"c1"`, 8}, {"c", `"id":2,"y":"late"`, 13}} {
			require.NoError(t, h.ex.Ingest(e.in, []byte(ev(e.s, e.extra)), exec.ArrivalIsEventTime))
		}
		return h.flush()
	}
	// c "late" is 11 s after a id 2: unmatched, emitted at the joined row's
	// time (4 s) plus the bound.
	require.Equal(t, []string{`8 {"id":1,"bx":"b1","cy":"c1"}`, `14 {"id":2,"bx":"b2","cy":null}`},
		run(`SELECT a.id, b.x AS bx, c.y AS cy`+from))
	for _, row := range run(`SELECT *` + from) {
		require.NotContains(t, row, "#time")
		require.Contains(t, row, `"b":{`)
	}
}

func TestExecReferenceJoinReload(t *testing.T) {
	h := newHarness(t, `SELECT i.k, ref.name FROM i TIMESTAMP BY t JOIN ref ON i.k = ref.k`, exec.Options{})
	load := func(rows string) {
		recs, err := value.ParseJSON(rows)
		require.NoError(t, err)
		var rs []*value.Record
		for _, v := range recs.Array().Items {
			rs = append(rs, v.Record())
		}
		require.NoError(t, h.ex.SetReference("ref", rs))
	}
	load(`[{"k":1,"name":"one"},{"k":2,"name":"two"}]`)
	h.feed(ev(1, `"k":1`), ev(2, `"k":3`))
	load(`[{"k":3,"name":"three"}]`) // reloaded while running
	h.feed(ev(3, `"k":3`), ev(4, `"k":1`))
	require.Equal(t, []string{`1 {"k":1,"name":"one"}`, `3 {"k":3,"name":"three"}`}, h.flush())
	require.ErrorIs(t, h.ex.SetReference("nope", nil), exec.ErrUnknownInput)
}

func TestExecAggregateOverIncludesCurrentEvent(t *testing.T) {
	h := newHarness(t, `SELECT k, v,
		SUM(v) OVER (PARTITION BY k LIMIT DURATION(second, 10)) AS s,
		COUNT(*) OVER (PARTITION BY k LIMIT DURATION(second, 10) WHEN v > 1) AS n,
		MAX(v) OVER (LIMIT DURATION(second, 10)) AS mx
		FROM i TIMESTAMP BY t`, exec.Options{})
	got := h.feed(ev(1, `"k":"a","v":3`), ev(2, `"k":"a","v":4`), ev(5, `"k":"b","v":1`), ev(13, `"k":"a","v":2`)).flush()
	require.Equal(t, []string{
		`1 {"k":"a","v":3,"s":3,"n":1,"mx":3}`,
		`2 {"k":"a","v":4,"s":7,"n":2,"mx":4}`,
		`5 {"k":"b","v":1,"s":1,"n":0,"mx":4}`,
		`13 {"k":"a","v":2,"s":2,"n":1,"mx":2}`, // the events at 1 s and 2 s are out of reach (13-10 = 3)
	}, got)
}

// Whole-record results keep the fields the query names nowhere else: the
// decoder must not skip them.
func TestExecWholeRecordResultsKeepEveryField(t *testing.T) {
	h := newHarness(t, `SELECT CollectTop(1) OVER (ORDER BY v DESC) AS top, Collect(e) AS es
		FROM i e TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`, exec.Options{})
	got := h.feed(ev(1, `"v":3,"x":"a"`), ev(2, `"v":5,"x":"b","n":{"k":1}`)).flush()
	t2 := value.FormatTicks(at(2))
	require.Equal(t, []string{`10 {"top":[{"rank":1,"value":{"t":"` + t2 + `","v":5,"x":"b","n":{"k":1}}}],` +
		`"es":[{"t":"` + value.FormatTicks(at(1)) + `","v":3,"x":"a"},{"t":"` + t2 + `","v":5,"x":"b","n":{"k":1}}]}`}, got)

	h = newHarness(t, `SELECT p.PropertyName AS name FROM i e TIMESTAMP BY t
		CROSS APPLY GetRecordProperties(e) AS p WHERE v > 1`, exec.Options{})
	got = h.feed(ev(1, `"v":3,"x":"a"`)).flush()
	require.Equal(t, []string{`1 {"name":"t"}`, `1 {"name":"v"}`, `1 {"name":"x"}`}, got)
}

func TestExecCollectionAndPercentileAggregates(t *testing.T) {
	h := newHarness(t, `SELECT COLLECT(v) AS vals, CollectTop(2, v) OVER (ORDER BY v DESC) AS top,
		TopOne() OVER (ORDER BY v ASC) AS lowest,
		PERCENTILE_CONT(0.5) OVER (ORDER BY v) AS med, PERCENTILE_DISC(0.5) OVER (ORDER BY v) AS dmed
		FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`, exec.Options{})
	got := h.feed(ev(1, `"v":3`), ev(2, `"v":1`), ev(3, `"v":4`), ev(4, `"v":2`)).flush()
	require.Equal(t, []string{`10 {"vals":[3,1,4,2],"top":[{"rank":1,"value":4},{"rank":2,"value":3}],` +
		`"lowest":{"t":"` + value.FormatTicks(at(2)) + `","v":1},"med":2.5,"dmed":2}`}, got)

	// The reference's example: 0.95 of {0.78, 0.89, 0.93, 0.98, 0.99}.
	h = newHarness(t, `SELECT PERCENTILE_CONT(0.95) OVER (ORDER BY x) AS c, PERCENTILE_DISC(0.95) OVER (ORDER BY x) AS d
		FROM i TIMESTAMP BY t GROUP BY TumblingWindow(second, 10)`, exec.Options{})
	got = h.feed(ev(1, `"x":0.93`), ev(2, `"x":0.78`), ev(3, `"x":0.99`), ev(4, `"x":0.89`), ev(5, `"x":0.98`)).flush()
	require.Len(t, got, 1)
	require.Contains(t, got[0], `"d":0.99`)
	require.Regexp(t, `"c":0\.98799999|"c":0\.988`, got[0])
}

func TestExecHoppingMergesCollections(t *testing.T) {
	h := newHarness(t, `SELECT COLLECT(v) AS vals, CollectTop(1, v) OVER (ORDER BY v DESC) AS top
		FROM i TIMESTAMP BY t GROUP BY HoppingWindow(second, 10, 5)`, exec.Options{})
	got := h.feed(ev(1, `"v":1`), ev(6, `"v":9`), ev(12, `"v":5`)).flush()
	require.Equal(t, []string{
		`5 {"vals":[1],"top":[{"rank":1,"value":1}]}`,
		`10 {"vals":[1,9],"top":[{"rank":1,"value":9}]}`,
		`15 {"vals":[9,5],"top":[{"rank":1,"value":9}]}`,
		`20 {"vals":[5],"top":[{"rank":1,"value":5}]}`,
	}, got)
}

func TestExecMatchRecognize(t *testing.T) {
	q := `SELECT * FROM i TIMESTAMP BY t MATCH_RECOGNIZE (
		LIMIT DURATION(minute, 1) PARTITION BY k
		MEASURES First(B.v) AS f, Last(B.v) AS l, Max(B.v) AS mx, C.v AS c, A.k AS k
		AFTER MATCH SKIP PAST LAST ROW
		PATTERN (A B+ C?)
		DEFINE A AS A.v = 1, B AS B.v > 1 AND B.v < 9, C AS C.v = 9) AS m`
	var events []string
	for i, v := range []int{1, 2, 3, 9, 1, 5, 7} {
		events = append(events, ev(float64(i+1), fmt.Sprintf(`"k":"x","v":%d`, v)))
	}
	got := newHarness(t, q, exec.Options{}).feed(events...).flush()
	require.Equal(t, []string{`4 {"f":2,"l":3,"mx":3,"c":9,"k":"x"}`, `7 {"f":5,"l":7,"mx":7,"c":null,"k":"x"}`}, got)

	// The duration bounds a match: B rows more than a minute after A do not count.
	late := []string{ev(1, `"k":"y","v":1`), ev(2, `"k":"y","v":2`), ev(100, `"k":"y","v":3`)}
	got = newHarness(t, q, exec.Options{}).feed(late...).flush()
	require.Equal(t, []string{`2 {"f":2,"l":2,"mx":2,"c":null,"k":"y"}`}, got)
}

func TestExecMultipleWindows(t *testing.T) {
	h := newHarness(t, `SELECT System.Window().Id AS w, COUNT(*) AS n FROM i TIMESTAMP BY t
		GROUP BY Windows(Window('ten', TumblingWindow(second, 10)), Window('five', TumblingWindow(second, 5)))`, exec.Options{})
	got := h.feed(ev(1, ""), ev(6, ""), ev(7, "")).flush()
	require.Equal(t, []string{`5 {"w":"five","n":1}`, `10 {"w":"ten","n":3}`, `10 {"w":"five","n":2}`}, got)
}
