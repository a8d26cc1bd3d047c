package expr

import (
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// patIndexByEveryStart is the quadratic definition: the first position
// where the pattern (without its leading %, with a trailing one) matches.
func patIndexByEveryStart(pattern, s string) int64 {
	toks := parseLike(pattern)
	if len(toks) > 0 && toks[0].kind == '%' {
		toks = toks[1:]
	}
	withStar := append(append([]likeTok(nil), toks...), likeTok{kind: '%'})
	pos := int64(1)
	for i := 0; i <= len(s); {
		if likeMatch(withStar, s[i:]) {
			return pos
		}
		if i == len(s) {
			break
		}
		_, sz := utf8.DecodeRuneInString(s[i:])
		i += sz
		pos++
	}
	return 0
}

// TestPatIndexMatchesDefinition: the linear search agrees with trying
// every start position, on random patterns and texts.
func TestPatIndexMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	pieces := []string{"a", "b", "é", "_", "%", "[ab]", "[^a]"}
	for n := 0; n < 20000; n++ {
		var p, s strings.Builder
		for i := rng.Intn(6); i > 0; i-- {
			p.WriteString(pieces[rng.Intn(len(pieces))])
		}
		for i := rng.Intn(12); i > 0; i-- {
			s.WriteString([]string{"a", "b", "é", "c"}[rng.Intn(4)])
		}
		want := patIndexByEveryStart(p.String(), s.String())
		got := patIndex(parseLike(p.String()), []rune(s.String()))
		require.Equal(t, want, got, "PATINDEX(%q, %q)", p.String(), s.String())
	}
}
