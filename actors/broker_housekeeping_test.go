package actors

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBrokerHousekeepingIsSlowed: the embedded broker's housekeeping
// tickers are found in this mochi release and set to
// brokerHousekeepingEvery (issue 18). It fails when a mochi upgrade moves
// them: the broker then keeps mochi's every-second tickers, and an idle
// gateway pays for them.
func TestBrokerHousekeepingIsSlowed(t *testing.T) {
	g := New(Config{Partitions: 2}, nil, nil)
	defer g.Close(t.Context())
	b, err := StartBroker(g, BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1024})
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, brokerHousekeepingEvery, b.housekeeping)
}
