package plan

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLongChainsAreBounded (issue 13): v+v+...+v with 1.3 million terms
// nested the tree 1.3 million deep without recursion in the parser, and
// the planner's walk of it overflowed the stack. Chains are bounded in the
// parser with a position; a long chain under the bound still plans. (The
// 1.3 million terms themselves are refused earlier now, by sql.MaxTokens:
// these chains stay under it.)
func TestLongChainsAreBounded(t *testing.T) {
	for name, chain := range map[string]string{
		"sum":    strings.Repeat("v+", 20_000) + "v",
		"and":    strings.Repeat("v > 1 AND ", 20_000) + "v > 1",
		"member": "System.Window()" + strings.Repeat(".Id", 20_000),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromSQL("SELECT " + chain + " AS x INTO o FROM t")
			require.Error(t, err)
			require.Contains(t, err.Error(), "chained operators")
			require.Contains(t, err.Error(), "line 1, column")
		})
	}
	p, err := FromSQL("SELECT " + strings.Repeat("v+", 5000) + "v AS x INTO o FROM t")
	require.NoError(t, err)
	require.NotNil(t, p)
}

// TestHoppingWindowsPerEventBounded (issue 13): a 7-day window hopping
// every microsecond put one event in 604 billion windows; it is refused at
// the hop, with the count. Seven days hopping every minute still plans.
func TestHoppingWindowsPerEventBounded(t *testing.T) {
	_, err := FromSQL("SELECT COUNT(*) INTO o FROM t GROUP BY HoppingWindow(Duration(day, 7), Hop(microsecond, 1))")
	require.Error(t, err)
	require.Contains(t, err.Error(), "windows, at most 20000")
	require.Contains(t, err.Error(), "line 1, column")
	_, err = FromSQL("SELECT COUNT(*) INTO o FROM t GROUP BY HoppingWindow(Duration(day, 7), Hop(minute, 1))")
	require.NoError(t, err)
}
