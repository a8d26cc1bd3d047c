package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/cluster"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/state"
)

// TestDefaultsAgreeWithPackages: the packages a gateway is made of fall
// back to the same values when used as libraries.
func TestDefaultsAgreeWithPackages(t *testing.T) {
	require.Equal(t, config.DefaultDeadLetterEntries, state.DefaultDeadLetterEntries)
	require.Equal(t, config.DefaultDeadLetterBytes, state.DefaultDeadLetterBytes)
	lan := cluster.MemberlistLANDefaults()
	require.Equal(t, config.DefaultProbeInterval, lan.ProbeInterval)
	require.Equal(t, config.DefaultProbeTimeout, lan.ProbeTimeout)
	require.Equal(t, config.DefaultGossipInterval, lan.GossipInterval)
	require.Equal(t, config.DefaultSuspicionMult, lan.SuspicionMult)
	require.Equal(t, 10*time.Second, config.DefaultHandOffWait)
}
