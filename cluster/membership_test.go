package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// fast failure detection for tests (DESIGN.md: about 2.5-3 s tuned).
func testConfig(name string, seeds []string, key []byte) Config {
	return Config{Name: name, Bind: "127.0.0.1:0", Seeds: seeds, SecretKey: key,
		Meta:          &pb.NodeMeta{RemoteAddr: "127.0.0.1:9" + name[len(name)-1:], HttpAddr: "127.0.0.1:8" + name[len(name)-1:], Version: "test"},
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, GossipInterval: 50 * time.Millisecond, SuspicionMult: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func join(t *testing.T, name string, seeds []string, key []byte) *Membership {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := Join(ctx, testConfig(name, seeds, key))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func waitMembers(t *testing.T, want []string, ms ...*Membership) {
	t.Helper()
	for _, m := range ms {
		require.Eventually(t, func() bool { return fmt.Sprint(m.Names()) == fmt.Sprint(want) }, 10*time.Second, 20*time.Millisecond,
			"%s sees %v, want %v", m.ml.LocalNode().Name, m.Names(), want)
	}
}

// TestMembershipJoinMetadataAndFailure: three gateways join through a
// seed, see each other's metadata and compute the same placement; when
// one stops without a goodbye (as after kill -9) the others drop it, and
// a graceful leave spreads too.
func TestMembershipJoinMetadataAndFailure(t *testing.T) {
	a := join(t, "gw-a", nil, nil)
	b := join(t, "gw-b", []string{a.Addr()}, nil)
	c := join(t, "gw-c", []string{b.Addr()}, nil)
	waitMembers(t, []string{"gw-a", "gw-b", "gw-c"}, a, b, c)
	for _, mem := range a.Members() {
		require.NotNil(t, mem.Meta, mem.Name)
		require.Equal(t, "test", mem.Meta.Version)
		require.Equal(t, "127.0.0.1:8"+mem.Name[len(mem.Name)-1:], mem.Meta.HttpAddr)
	}
	ta, err := Place(64, 2, a.Names())
	require.NoError(t, err)
	tc, err := Place(64, 2, c.Names())
	require.NoError(t, err)
	require.Equal(t, ta, tc)
	select {
	case <-a.Changes():
	default:
		t.Fatal("joins were not signalled")
	}

	start := time.Now()
	require.NoError(t, c.Shutdown())
	waitMembers(t, []string{"gw-a", "gw-b"}, a, b)
	t.Logf("a stopped member was dropped after %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	require.NoError(t, b.Leave(time.Second))
	waitMembers(t, []string{"gw-a"}, a)
	t.Logf("a graceful leave spread in %v", time.Since(start).Round(time.Millisecond))
}

// TestMembershipGossipKey: with a secret key, a gateway with another key
// (or none) cannot join.
func TestMembershipGossipKey(t *testing.T) {
	key := []byte("0123456789abcdef")
	a := join(t, "gw-a", nil, key)
	b := join(t, "gw-b", []string{a.Addr()}, key)
	waitMembers(t, []string{"gw-a", "gw-b"}, a, b)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, other := range [][]byte{[]byte("fedcba9876543210"), nil} {
		m, err := Join(ctx, testConfig("gw-x", []string{a.Addr()}, other))
		if err == nil {
			_ = m.Shutdown()
		}
		require.Error(t, err, "joined with key %q", other)
		t.Logf("key %q: %v", other, err)
	}
	_, err := Join(ctx, testConfig("gw-y", nil, []byte("short")))
	require.ErrorContains(t, err, "16, 24 or 32")
	waitMembers(t, []string{"gw-a", "gw-b"}, a, b)
}

// TestMembershipRefusesOtherPartitions: a gateway whose metadata Admit
// refuses (another number of partitions) cannot join, gets the reason as
// its error, and stays out of the others' view; one that agrees joins.
func TestMembershipRefusesOtherPartitions(t *testing.T) {
	cfg := func(name string, parts uint32, seeds []string) Config {
		c := testConfig(name, seeds, nil)
		c.Meta.Partitions = parts
		c.Admit = func(meta *pb.NodeMeta) error {
			if meta.Partitions != parts {
				return fmt.Errorf("has %d partitions, not %d", meta.Partitions, parts)
			}
			return nil
		}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := Join(ctx, cfg("gw-a", 16, nil))
	require.NoError(t, err)
	defer a.Shutdown()

	b, err := Join(ctx, cfg("gw-b", 64, []string{a.Addr()}))
	if b != nil {
		_ = b.Shutdown()
	}
	require.ErrorContains(t, err, "has 16 partitions, not 64")

	c, err := Join(ctx, cfg("gw-c", 16, []string{a.Addr()}))
	require.NoError(t, err)
	defer c.Shutdown()
	waitMembers(t, []string{"gw-a", "gw-c"}, a, c)
	time.Sleep(300 * time.Millisecond) // a few gossip rounds
	require.Equal(t, []string{"gw-a", "gw-c"}, a.Names())
}
