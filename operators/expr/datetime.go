package expr

import (
	"strconv"
	"strings"
	"time"

	"github.com/millstream/millstream/operators/value"
)

var datePartNames = map[string]string{
	"year": "year", "yy": "year", "yyyy": "year",
	"quarter": "quarter", "qq": "quarter", "q": "quarter",
	"month": "month", "mm": "month", "m": "month",
	"dayofyear": "dayofyear", "dy": "dayofyear", "y": "dayofyear",
	"day": "day", "dd": "day", "d": "day",
	"week": "week", "wk": "week", "ww": "week",
	"weekday": "weekday", "dw": "weekday", "w": "weekday",
	"hour": "hour", "hh": "hour",
	"minute": "minute", "mi": "minute", "n": "minute",
	"second": "second", "ss": "second", "s": "second",
	"millisecond": "millisecond", "ms": "millisecond",
	"microsecond": "microsecond", "mcs": "microsecond",
	"nanosecond": "nanosecond", "ns": "nanosecond",
}

// IsDatePart reports whether s names a date part (any documented spelling).
func IsDatePart(s string) bool {
	_, ok := datePartNames[strings.ToLower(s)]
	return ok
}

var fixedParts = map[string]int64{
	"day": value.TicksPerDay, "dayofyear": value.TicksPerDay, "weekday": value.TicksPerDay,
	"week": 7 * value.TicksPerDay, "hour": value.TicksPerHour, "minute": value.TicksPerMinute,
	"second": value.TicksPerSecond, "millisecond": value.TicksPerMillisecond,
	"microsecond": value.TicksPerMicrosecond,
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func fnDateAdd(c *Ctx, a []value.Value) value.Value {
	if a[1].IsNull() || a[2].IsNull() {
		return value.Value{}
	}
	part := datePartNames[a[0].Str()]
	n, ok := intArg(c, a[1], "DATEADD")
	if !ok {
		return value.Value{}
	}
	t, ok := ToTime(c, a[2], "DATEADD")
	if !ok {
		return value.Value{}
	}
	var r int64
	switch part {
	case "year", "quarter", "month":
		months := n
		if part == "year" {
			months *= 12
		} else if part == "quarter" {
			months *= 3
		}
		r = addMonths(t, months)
	case "nanosecond":
		r = t + n/100
	default:
		r = t + n*fixedParts[part]
	}
	if r < 0 || r > value.MaxTicks {
		return c.failf("DATEADD result is outside the datetime range")
	}
	return value.Time(r)
}

// addMonths adds months, clamping the day to the target month's length
// (T-SQL semantics: Jan 31 + 1 month = Feb 28/29).
func addMonths(t int64, months int64) int64 {
	tt := value.ToTime(t)
	y, m, d := tt.Date()
	total := int64(y)*12 + int64(m-1) + months
	ny, nm := int(floorDiv(total, 12)), int(total-floorDiv(total, 12)*12)+1
	last := time.Date(ny, time.Month(nm)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d > last {
		d = last
	}
	rem := (t%value.TicksPerDay + value.TicksPerDay) % value.TicksPerDay
	days, _ := value.DateTimeFromParts(max(ny, 1), nm, d, 0, 0, 0, 0)
	return days + rem
}

func fnDateDiff(c *Ctx, a []value.Value) value.Value {
	if a[1].IsNull() || a[2].IsNull() {
		return value.Value{}
	}
	part := datePartNames[a[0].Str()]
	t1, ok1 := ToTime(c, a[1], "DATEDIFF")
	t2, ok2 := ToTime(c, a[2], "DATEDIFF")
	if !ok1 || !ok2 {
		return value.Value{}
	}
	switch part {
	case "year", "quarter", "month":
		y1, m1, _ := value.ToTime(t1).Date()
		y2, m2, _ := value.ToTime(t2).Date()
		switch part {
		case "year":
			return value.Int(int64(y2 - y1))
		case "quarter":
			return value.Int(int64((y2*4 + (int(m2)-1)/3) - (y1*4 + (int(m1)-1)/3)))
		}
		return value.Int(int64((y2*12 + int(m2)) - (y1*12 + int(m1))))
	case "week":
		// Week boundaries are Sundays; 0001-01-01 was a Monday (day 0).
		d1, d2 := floorDiv(t1, value.TicksPerDay), floorDiv(t2, value.TicksPerDay)
		return value.Int(floorDiv(d2+1, 7) - floorDiv(d1+1, 7))
	case "nanosecond":
		return value.Int((t2 - t1) * 100)
	}
	unit := fixedParts[part]
	return value.Int(floorDiv(t2, unit) - floorDiv(t1, unit))
}

func datePart(t int64, part string) int64 {
	tt := value.ToTime(t)
	switch part {
	case "year":
		return int64(tt.Year())
	case "quarter":
		return int64((tt.Month()-1)/3 + 1)
	case "month":
		return int64(tt.Month())
	case "dayofyear":
		return int64(tt.YearDay())
	case "day":
		return int64(tt.Day())
	case "week":
		// Week 1 holds January 1; weeks start on Sunday.
		jan1 := time.Date(tt.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return int64((tt.YearDay()-1+int(jan1.Weekday()))/7 + 1)
	case "weekday":
		return int64(tt.Weekday()) + 1
	case "hour":
		return int64(tt.Hour())
	case "minute":
		return int64(tt.Minute())
	case "second":
		return int64(tt.Second())
	case "millisecond":
		return int64(tt.Nanosecond() / 1e6)
	case "microsecond":
		return int64(tt.Nanosecond() / 1e3)
	case "nanosecond":
		return int64(tt.Nanosecond())
	}
	return 0
}

func fnDatePart(c *Ctx, a []value.Value) value.Value {
	if a[1].IsNull() {
		return value.Value{}
	}
	t, ok := ToTime(c, a[1], "DATEPART")
	if !ok {
		return value.Value{}
	}
	return value.Int(datePart(t, datePartNames[a[0].Str()]))
}

func fnDateName(c *Ctx, a []value.Value) value.Value {
	if a[1].IsNull() {
		return value.Value{}
	}
	t, ok := ToTime(c, a[1], "DATENAME")
	if !ok {
		return value.Value{}
	}
	switch part := datePartNames[a[0].Str()]; part {
	case "month":
		return value.Str(value.ToTime(t).Month().String())
	case "weekday":
		return value.Str(value.ToTime(t).Weekday().String())
	default:
		return value.Str(strconv.FormatInt(datePart(t, part), 10))
	}
}

func partFn(part string) func(c *Ctx, a []value.Value) value.Value {
	return func(c *Ctx, a []value.Value) value.Value {
		if a[0].IsNull() {
			return a[0]
		}
		t, ok := ToTime(c, a[0], strings.ToUpper(part))
		if !ok {
			return value.Value{}
		}
		return value.Int(datePart(t, part))
	}
}

func fnDateTimeFromParts(c *Ctx, a []value.Value) value.Value {
	if anyNull(a) {
		return value.Value{}
	}
	var p [7]int
	for i := range p {
		n, ok := intArg(c, a[i], "DATETIMEFROMPARTS")
		if !ok {
			return value.Value{}
		}
		p[i] = int(n)
	}
	t, err := value.DateTimeFromParts(p[0], p[1], p[2], p[3], p[4], p[5], p[6])
	if err != nil {
		return c.failf("DATETIMEFROMPARTS: %v", err)
	}
	return value.Time(t)
}
