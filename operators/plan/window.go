package plan

import (
	"math"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/sql"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// maxWindow is the largest window size Stream Analytics allows.
const maxWindow = 7 * value.TicksPerDay

// maxWindowsPerEvent bounds size/hop of a hopping window: seven days
// hopping every minute (10,080 windows) fits.
const maxWindowsPerEvent = 20000

var windowKinds = map[string]pb.Window_Kind{
	"tumblingwindow": pb.Window_TUMBLING, "tumbling": pb.Window_TUMBLING,
	"hoppingwindow": pb.Window_HOPPING, "hopping": pb.Window_HOPPING,
	"slidingwindow": pb.Window_SLIDING, "sliding": pb.Window_SLIDING,
	"sessionwindow": pb.Window_SESSION, "session": pb.Window_SESSION,
}

func isWindowFunc(name string) bool {
	_, ok := windowKinds[name]
	return ok || name == "windows"
}

var timeUnits = map[string]int64{
	"day": value.TicksPerDay, "dd": value.TicksPerDay, "d": value.TicksPerDay,
	"hour": value.TicksPerHour, "hh": value.TicksPerHour,
	"minute": value.TicksPerMinute, "mi": value.TicksPerMinute, "n": value.TicksPerMinute,
	"second": value.TicksPerSecond, "ss": value.TicksPerSecond, "s": value.TicksPerSecond,
	"millisecond": value.TicksPerMillisecond, "ms": value.TicksPerMillisecond,
	"microsecond": value.TicksPerMicrosecond, "mcs": value.TicksPerMicrosecond,
}

// window converts a window call of GROUP BY; nil when call is not a window.
func (c *stageCtx) window(call *sql.Call) *pb.Window {
	name := strings.ToLower(call.Name)
	kind, ok := windowKinds[name]
	if !ok {
		return nil
	}
	durs := c.durations(call)
	w := &pb.Window{Kind: kind}
	need := func(minN, maxN int, form string) {
		if len(durs) < minN || len(durs) > maxN {
			c.b.failAt(call.P, "%s expects %s", call.Name, form)
		}
	}
	switch kind {
	case pb.Window_TUMBLING:
		need(1, 2, "(unit, size [, offset])")
		w.Size = durs[0].ticks
		w.Hop = w.Size
		if len(durs) > 1 {
			w.Offset = durs[1].ticks
		}
	case pb.Window_HOPPING:
		need(2, 3, "(unit, size, hop [, offset])")
		w.Size, w.Hop = durs[0].ticks, durs[1].ticks
		if len(durs) > 2 {
			w.Offset = durs[2].ticks
		}
		if w.Hop > w.Size {
			c.b.failAt(durs[1].pos, "the hop (%s) must not exceed the window size", durs[1].text)
		}
		// Every event is in size/hop windows: a tiny hop made one event
		// open 31 million of them (issue 13).
		if w.Hop > 0 && w.Size/w.Hop > maxWindowsPerEvent {
			c.b.failAt(durs[1].pos, "a hop of %s puts each event in %d windows, at most %d: use a longer hop or a shorter window", durs[1].text, w.Size/w.Hop, maxWindowsPerEvent)
		}
	case pb.Window_SLIDING:
		need(1, 1, "(unit, size)")
		w.Size = durs[0].ticks
	case pb.Window_SESSION:
		need(2, 2, "(unit, timeout, maxDuration)")
		w.Timeout, w.MaxDuration = durs[0].ticks, durs[1].ticks
		if w.Timeout > w.MaxDuration {
			c.b.failAt(durs[0].pos, "the session timeout must not exceed its maximum duration")
		}
		if call.Over != nil {
			if call.Over.Limit != nil || call.Over.When != nil {
				c.b.failAt(call.Over.P, "SessionWindow OVER accepts only PARTITION BY")
			}
			for _, p := range call.Over.PartitionBy {
				w.PartitionBy = append(w.PartitionBy, c.row(p))
			}
		}
	}
	if kind != pb.Window_SESSION && call.Over != nil {
		c.b.failAt(call.Over.P, "OVER is only allowed with SessionWindow")
	}
	for i, d := range durs {
		isOffset := (kind == pb.Window_TUMBLING && i == 1) || (kind == pb.Window_HOPPING && i == 2)
		if !isOffset && d.ticks <= 0 {
			c.b.failAt(d.pos, "window durations must be positive")
		}
		if d.ticks > maxWindow || -d.ticks > maxWindow {
			c.b.failAt(d.pos, "window durations are limited to 7 days")
		}
	}
	return w
}

type duration struct {
	ticks int64
	pos   sql.Pos
	text  string
}

// durations reads the arguments of a window: either `unit, n, n...` or
// wrapper calls `Duration(unit, n), Hop(unit, n), Offset(unit, n), ...`.
func (c *stageCtx) durations(call *sql.Call) []duration {
	if len(call.Args) == 0 {
		c.b.failAt(call.P, "%s needs a time unit and a size", call.Name)
	}
	if id, ok := call.Args[0].(*sql.Ident); ok {
		unit := c.unit(id)
		var out []duration
		for _, a := range call.Args[1:] {
			out = append(out, duration{ticks: c.count(a, unit), pos: a.Position(), text: a.String()})
		}
		return out
	}
	var out []duration
	for _, a := range call.Args {
		w, ok := a.(*sql.Call)
		if !ok || len(w.Args) != 2 {
			c.b.failAt(a.Position(), "expected a time unit, or Duration(unit, n) / Hop(unit, n) / Offset(unit, n) / Timeout(unit, n) / MaxDuration(unit, n)")
		}
		id, ok := w.Args[0].(*sql.Ident)
		if !ok {
			c.b.failAt(w.Args[0].Position(), "expected a time unit (day, hour, minute, second, millisecond, microsecond)")
		}
		out = append(out, duration{ticks: c.count(w.Args[1], c.unit(id)), pos: a.Position(), text: a.String()})
	}
	return out
}

func (c *stageCtx) unit(id *sql.Ident) int64 {
	if len(id.Parts) == 1 {
		if u, ok := timeUnits[strings.ToLower(id.Parts[0])]; ok {
			return u
		}
	}
	c.b.failAt(id.P, "expected a time unit (day, hour, minute, second, millisecond, microsecond), found %s", id)
	return 0
}

func (c *stageCtx) count(e sql.Expr, unit int64) int64 {
	l, ok := e.(*sql.Literal)
	if !ok || l.Kind != sql.LitNumber {
		c.b.failAt(e.Position(), "window sizes must be number constants, found %s", e)
	}
	f, err := strconv.ParseFloat(l.Text, 64)
	if err != nil || math.Abs(f*float64(unit)) > float64(math.MaxInt64/2) {
		c.b.failAt(e.Position(), "window size %s is out of range", l.Text)
	}
	return int64(math.Round(f * float64(unit)))
}

type windowChoice struct {
	id      string
	groupBy []sql.Expr
}

// multiWindows expands GROUP BY ..., Windows(w1, w2) or Windows(Window('id',
// w1), ...) into one GROUP BY per window; nil when there is no Windows().
func multiWindows(b *builder, sel *sql.Select) []windowChoice {
	at := -1
	for i, g := range sel.GroupBy {
		if c, ok := g.(*sql.Call); ok && strings.EqualFold(c.Name, "windows") {
			if at >= 0 {
				b.failAt(c.P, "only one Windows(...) per GROUP BY")
			}
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	call := sel.GroupBy[at].(*sql.Call)
	if len(call.Args) == 0 {
		b.failAt(call.P, "Windows(...) needs at least one window")
	}
	var out []windowChoice
	named, ids := 0, map[string]bool{}
	for _, a := range call.Args {
		w, id := a, ""
		if c, ok := a.(*sql.Call); ok && strings.EqualFold(c.Name, "window") {
			l, isLit := c.Args[0].(*sql.Literal)
			if len(c.Args) != 2 || !isLit || l.Kind != sql.LitString {
				b.failAt(c.P, "Window takes ('id', window)")
			}
			id, w = l.Text, c.Args[1]
			if ids[strings.ToLower(id)] {
				b.failAt(c.P, "window id %q is used twice", id)
			}
			ids[strings.ToLower(id)] = true
			named++
		}
		if c, ok := w.(*sql.Call); !ok || !isWindowFunc(strings.ToLower(c.Name)) || strings.EqualFold(c.Name, "windows") {
			b.failAt(w.Position(), "Windows(...) takes windows such as TumblingWindow(...), or Window('id', window)")
		}
		gb := append(append(append([]sql.Expr(nil), sel.GroupBy[:at]...), w), sel.GroupBy[at+1:]...)
		out = append(out, windowChoice{id: id, groupBy: gb})
	}
	if named != 0 && named != len(call.Args) {
		b.failAt(call.P, "give every window of Windows(...) an id, or none")
	}
	return out
}
