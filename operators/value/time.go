package value

import (
	"errors"
	"fmt"
	"time"
)

// Tick units.
const (
	TicksPerMicrosecond int64 = 10
	TicksPerMillisecond       = 1000 * TicksPerMicrosecond
	TicksPerSecond            = 1000 * TicksPerMillisecond
	TicksPerMinute            = 60 * TicksPerSecond
	TicksPerHour              = 60 * TicksPerMinute
	TicksPerDay               = 24 * TicksPerHour

	// UnixEpochTicks is 1970-01-01T00:00:00Z in ticks.
	UnixEpochTicks int64 = 621355968000000000
	// MaxTicks is 9999-12-31T23:59:59.9999999Z.
	MaxTicks int64 = 3155378975999999999
)

// ErrBadTime is returned for strings that are not ISO-8601 datetimes.
var ErrBadTime = errors.New("value: not an ISO-8601 datetime")

// FromTime converts a time.Time to ticks.
func FromTime(t time.Time) int64 {
	return UnixEpochTicks + t.Unix()*TicksPerSecond + int64(t.Nanosecond())/100
}

// ToTime converts ticks to a UTC time.Time.
func ToTime(ticks int64) time.Time {
	u := ticks - UnixEpochTicks
	sec := u / TicksPerSecond
	rem := u % TicksPerSecond
	if rem < 0 {
		rem += TicksPerSecond
		sec--
	}
	return time.Unix(sec, rem*100).UTC()
}

// FormatTicks writes ticks as Stream Analytics does: yyyy-MM-ddTHH:mm:ss.fffffffZ.
func FormatTicks(ticks int64) string {
	return string(AppendTicks(nil, ticks))
}

// AppendTicks appends the ISO-8601 form of ticks to b.
func AppendTicks(b []byte, ticks int64) []byte {
	t := ToTime(ticks)
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	frac := (ticks%TicksPerSecond + TicksPerSecond) % TicksPerSecond
	b = appendInt(b, y, 4)
	b = append(b, '-')
	b = appendInt(b, int(mo), 2)
	b = append(b, '-')
	b = appendInt(b, d, 2)
	b = append(b, 'T')
	b = appendInt(b, h, 2)
	b = append(b, ':')
	b = appendInt(b, mi, 2)
	b = append(b, ':')
	b = appendInt(b, s, 2)
	b = append(b, '.')
	b = appendInt(b, int(frac), 7)
	return append(b, 'Z')
}

func appendInt(b []byte, v, width int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for v > 0 || width > 0 {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, tmp[i:]...)
}

// LooksLikeTime is a cheap test that s could be an ISO-8601 date: four
// digits, '-', two digits, '-'. ParseTime decides.
func LooksLikeTime(s string) bool {
	return len(s) >= 10 && s[4] == '-' && s[7] == '-' && s[0] >= '0' && s[0] <= '9'
}

// ParseTime reads an ISO-8601 datetime: a date, optionally followed by 'T'
// or ' ' and a time of day with up to 7 fractional digits, optionally
// followed by 'Z' or an offset. A value without offset is UTC.
func ParseTime(s string) (int64, error) {
	p := timeParser{s: s, ok: true}
	y := p.digits(4)
	p.expect('-')
	mo := p.digits(2)
	p.expect('-')
	d := p.digits(2)
	var h, mi, sec, frac int
	if p.ok && p.i < len(s) && (s[p.i] == 'T' || s[p.i] == 't' || s[p.i] == ' ') {
		p.i++
		h = p.digits(2)
		p.expect(':')
		mi = p.digits(2)
		if p.ok && p.i < len(s) && s[p.i] == ':' {
			p.i++
			sec = p.digits(2)
			if p.ok && p.i < len(s) && (s[p.i] == '.' || s[p.i] == ',') {
				p.i++
				n := 0
				for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
					if n < 7 {
						frac = frac*10 + int(s[p.i]-'0')
					}
					n++
					p.i++
				}
				if n == 0 {
					p.ok = false
				}
				for ; n < 7; n++ {
					frac *= 10
				}
			}
		}
	}
	offset := 0
	if p.ok && p.i < len(s) {
		switch s[p.i] {
		case 'Z', 'z':
			p.i++
		case '+', '-':
			sign := 1
			if s[p.i] == '-' {
				sign = -1
			}
			p.i++
			oh := p.digits(2)
			if p.i < len(s) && s[p.i] == ':' {
				p.i++
			}
			om := p.digits(2)
			offset = sign * (oh*60 + om)
		default:
			p.ok = false
		}
	}
	if !p.ok || p.i != len(s) || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || sec > 59 || y < 1 {
		return 0, fmt.Errorf("%w: %q", ErrBadTime, truncate(s, 64))
	}
	days := daysFromCivil(y, mo, d)
	ticks := days*TicksPerDay + int64(h)*TicksPerHour + int64(mi)*TicksPerMinute +
		int64(sec)*TicksPerSecond + int64(frac) - int64(offset)*TicksPerMinute
	return ticks, nil
}

type timeParser struct {
	s  string
	i  int
	ok bool
}

func (p *timeParser) digits(n int) int {
	if !p.ok || p.i+n > len(p.s) {
		p.ok = false
		return 0
	}
	v := 0
	for j := 0; j < n; j++ {
		c := p.s[p.i+j]
		if c < '0' || c > '9' {
			p.ok = false
			return 0
		}
		v = v*10 + int(c-'0')
	}
	p.i += n
	return v
}

func (p *timeParser) expect(c byte) {
	if !p.ok || p.i >= len(p.s) || p.s[p.i] != c {
		p.ok = false
		return
	}
	p.i++
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns days since 0001-01-01 for a proleptic Gregorian date.
func daysFromCivil(y, m, d int) int64 {
	y--
	days := int64(y)*365 + int64(y/4) - int64(y/100) + int64(y/400)
	for mm := 1; mm < m; mm++ {
		days += int64(daysIn(y+1, mm))
	}
	return days + int64(d-1)
}

// DateTimeFromParts builds ticks from calendar parts (month and day 1-based).
func DateTimeFromParts(y, mo, d, h, mi, s, ms int) (int64, error) {
	if y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 || ms < 0 || ms > 999 {
		return 0, fmt.Errorf("value: invalid date parts %d-%d-%d %d:%d:%d.%d", y, mo, d, h, mi, s, ms)
	}
	return daysFromCivil(y, mo, d)*TicksPerDay + int64(h)*TicksPerHour + int64(mi)*TicksPerMinute +
		int64(s)*TicksPerSecond + int64(ms)*TicksPerMillisecond, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
