package expr

import (
	"fmt"
	"regexp"
	"unicode/utf8"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// compileLike compiles x LIKE pattern. A constant pattern is compiled once;
// a computed one is recompiled only when it changes.
func compileLike(call *pb.Call, args []Eval) (Eval, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("expr: like takes 2 arguments")
	}
	x, pat := args[0], args[1]
	var lastPat string
	var m []likeTok
	compiled := false
	return func(c *Ctx) value.Value {
		s, p := x(c), pat(c)
		if s.IsNull() || p.IsNull() {
			return value.Value{}
		}
		if s.Kind() != value.String || p.Kind() != value.String {
			return typeErr(c, "LIKE", s, p)
		}
		if !compiled || p.Str() != lastPat {
			lastPat, m, compiled = p.Str(), parseLike(p.Str()), true
		}
		return value.BitValue(likeMatch(m, s.Str()))
	}, nil
}

// likeTok is one element of a LIKE pattern.
type likeTok struct {
	kind byte // 'l' literal rune, '_' any rune, '%' any run, '[' set
	r    rune
	set  []rune // for '[': single runes and ranges as pairs
	neg  bool
}

func parseLike(p string) []likeTok {
	var out []likeTok
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		i += size
		switch r {
		case '%':
			if len(out) == 0 || out[len(out)-1].kind != '%' {
				out = append(out, likeTok{kind: '%'})
			}
		case '_':
			out = append(out, likeTok{kind: '_'})
		case '[':
			j := i
			t := likeTok{kind: '['}
			if j < len(p) && p[j] == '^' {
				t.neg = true
				j++
			}
			var runes []rune
			closed := false
			for j < len(p) {
				rr, sz := utf8.DecodeRuneInString(p[j:])
				j += sz
				if rr == ']' && len(runes) > 0 {
					closed = true
					break
				}
				runes = append(runes, rr)
			}
			if !closed {
				out = append(out, likeTok{kind: 'l', r: '['})
				continue
			}
			for k := 0; k < len(runes); k++ {
				if k+2 < len(runes) && runes[k+1] == '-' {
					t.set = append(t.set, runes[k], runes[k+2])
					k += 2
				} else {
					t.set = append(t.set, runes[k], runes[k])
				}
			}
			out = append(out, t)
			i = j
		default:
			out = append(out, likeTok{kind: 'l', r: r})
		}
	}
	return out
}

func (t *likeTok) matches(r rune) bool {
	switch t.kind {
	case 'l':
		return r == t.r
	case '_':
		return true
	}
	in := false
	for k := 0; k+1 < len(t.set); k += 2 {
		if r >= t.set[k] && r <= t.set[k+1] {
			in = true
			break
		}
	}
	return in != t.neg
}

// likeMatch matches with backtracking limited to the last '%', which is
// linear in practice and never exponential.
func likeMatch(p []likeTok, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		r, size := utf8.DecodeRuneInString(s[si:])
		if pi < len(p) && p[pi].kind == '%' {
			starP, starS = pi, si
			pi++
			continue
		}
		if pi < len(p) && p[pi].matches(r) {
			pi++
			si += size
			continue
		}
		if starP >= 0 {
			_, sz := utf8.DecodeRuneInString(s[starS:])
			starS += sz
			si = starS
			pi = starP + 1
			continue
		}
		return false
	}
	for pi < len(p) && p[pi].kind == '%' {
		pi++
	}
	return pi == len(p)
}

// fnPatIndex returns the 1-based position (in characters) of the first
// match of a '%...%' pattern, or 0. A pattern without the trailing % is
// searched the same way.
func fnPatIndex(c *Ctx, a []value.Value) value.Value {
	if anyNull(a) {
		return value.Value{}
	}
	if a[0].Kind() != value.String || a[1].Kind() != value.String {
		return typeErr(c, "PATINDEX", a[0], a[1])
	}
	return value.Int(patIndex(parseLike(a[0].Str()), []rune(a[1].Str())))
}

// patIndex finds the first match of toks in s in time linear in len(s)
// times the pattern's length. The pattern is seg0 % seg1 % ... % segN,
// each segment a run of one-character tokens. A match starts where seg0
// occurs; if the later segments, each taken at its leftmost occurrence,
// fit after the first occurrence of seg0, that is the answer, and if they
// do not, they fit after no later one either: so one greedy pass decides,
// where trying every start position would be quadratic.
func patIndex(toks []likeTok, s []rune) int64 {
	if len(toks) > 0 && toks[0].kind == '%' {
		toks = toks[1:]
	}
	var segs [][]likeTok
	seg := 0
	for i, t := range toks {
		if t.kind == '%' {
			segs = append(segs, toks[seg:i])
			seg = i + 1
		}
	}
	segs = append(segs, toks[seg:])
	first := findSegment(segs[0], s, 0)
	if first < 0 {
		return 0
	}
	at := first + len(segs[0])
	for _, sg := range segs[1:] {
		q := findSegment(sg, s, at)
		if q < 0 {
			return 0
		}
		at = q + len(sg)
	}
	return int64(first + 1)
}

// findSegment returns the first position at or after from where every
// token of seg matches one character, or -1.
func findSegment(seg []likeTok, s []rune, from int) int {
	for i := from; i+len(seg) <= len(s); i++ {
		ok := true
		for k := range seg {
			if !seg[k].matches(s[i+k]) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// compileRegexMatch compiles REGEXMATCH(s, re): position of the first match
// (1-based), 0 when none or when the expression is invalid, NULL when an
// argument is NULL. Matching is case-insensitive. Go's RE2 syntax covers
// the ECMAScript subset without backreferences and lookaround.
func compileRegexMatch(call *pb.Call, args []Eval) (Eval, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("expr: regexmatch takes 2 arguments")
	}
	x, pat := args[0], args[1]
	var last string
	var re *regexp.Regexp
	compiled := false
	return func(c *Ctx) value.Value {
		s, p := x(c), pat(c)
		if s.IsNull() || p.IsNull() {
			return value.Value{}
		}
		if !compiled || p.Str() != last {
			last, compiled = p.Str(), true
			re, _ = regexp.Compile("(?i)" + p.Str())
		}
		if re == nil {
			return value.Int(0)
		}
		text := ToText(s)
		loc := re.FindStringIndex(text)
		if loc == nil {
			return value.Int(0)
		}
		return value.Int(int64(utf8.RuneCountInString(text[:loc[0]]) + 1))
	}, nil
}
