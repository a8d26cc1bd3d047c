package cluster

import (
	"sort"
	"strings"
	"time"
)

// Status is the cluster as one gateway sees it (GET /v1/cluster and
// `millstream cluster status`).
type Status struct {
	Self    string `json:"self"`
	Gateway string `json:"gateway"`
	Quorum  string `json:"quorum"`
	Fenced  bool   `json:"fenced"`
	// AwaitingSeed: no seed answered at start and no other gateway has
	// been reached since; the gateway serves nothing meanwhile.
	AwaitingSeed bool `json:"awaitingSeed,omitempty"`
	Replicas     int  `json:"replicas"`
	// Known: the gateways counted for the majority (live or not).
	Known      []string          `json:"known"`
	Members    []MemberStatus    `json:"members"`
	Partitions []PartitionStatus `json:"partitions"`
	Counters   Counters          `json:"counters"`
}

// MemberStatus is one live member.
type MemberStatus struct {
	Name    string `json:"name"`
	Gateway string `json:"gateway"`
	State   string `json:"state"` // alive (in the gossip view), "left" while draining
	Gossip  string `json:"gossip"`
	Remote  string `json:"remote"`
	HTTP    string `json:"http"`
	Version string `json:"version"`
	Serving int    `json:"serving"` // partitions it serves
	// LastHeardMs: how long ago this gateway last heard from it (-1: never).
	LastHeardMs int64 `json:"lastHeardMs"`
}

// PartitionStatus is one partition: where the placement wants it and who
// serves it now. Epoch and replica lag are known for the partitions this
// gateway serves.
type PartitionStatus struct {
	Partition int      `json:"partition"`
	Owner     string   `json:"owner"`
	Replicas  []string `json:"replicas"`
	Server    string   `json:"server"` // "" while none does (a hand-off or take-over is under way)
	Epoch     uint64   `json:"epoch,omitempty"`
	// ReplicaLag: log entries each replica has not yet acknowledged.
	ReplicaLag map[string]uint64 `json:"replicaLag,omitempty"`
	// CaughtUp: replicas that hold everything (a new one is caught up first).
	CaughtUp []string `json:"caughtUp,omitempty"`
}

// Counters are the node's counters.
type Counters struct {
	Failovers       uint64 `json:"takeovers"`
	HandOffs        uint64 `json:"handOffs"`
	Forwarded       uint64 `json:"forwardedEvents"`
	RefusedForwards uint64 `json:"refusedForwards"`
	// Parked: events taken in while cut off from the majority (C11);
	// ParkedWaiting: how many of them wait to be forwarded.
	Parked        uint64 `json:"parkedEvents"`
	ParkedWaiting int64  `json:"parkedWaiting"`
	// Rejected: messages and connections from other gateways refused, by
	// reason (reject.go; also millstream_cluster_rejected_messages_total).
	Rejected map[string]uint64 `json:"rejectedMessages,omitempty"`
}

func baseOf(member string) string {
	b, _, _ := strings.Cut(member, "#")
	return b
}

// Status reports the cluster as this gateway sees it.
func (n *Node) Status() any {
	t, _ := n.table()
	st := Status{Self: n.name, Gateway: n.cfg.Gateway, Quorum: n.cfg.Quorum, Fenced: n.Fenced(), AwaitingSeed: n.awaitingSeed.Load(), Replicas: n.cfg.Replicas,
		Counters: Counters{Failovers: n.failovers.Load(), HandOffs: n.handoffs.Load(), Forwarded: n.forwarded.Load(), RefusedForwards: n.refusedFwd.Load(),
			Parked: n.parkedIn.Load(), ParkedWaiting: n.parkedNow.Load(), Rejected: n.rej.snapshot()}}
	now := time.Now()
	n.mu.Lock()
	for g := range n.known {
		st.Known = append(st.Known, g)
	}
	sort.Strings(st.Known)
	servers := make([]string, n.parts)
	for name, m := range n.view {
		ms := MemberStatus{Name: name, Gateway: baseOf(name), State: "alive", Gossip: m.Addr, LastHeardMs: -1}
		if m.Meta != nil {
			ms.Remote, ms.HTTP, ms.Version = m.Meta.RemoteAddr, m.Meta.HttpAddr, m.Meta.Version
		}
		if name == n.name {
			if n.draining {
				ms.State = "left"
			}
			ms.LastHeardMs = 0
		} else if c, ok := n.contact[name]; ok {
			ms.LastHeardMs = now.Sub(c).Milliseconds()
		}
		for p := 0; p < n.parts; p++ {
			mine := name == n.name && n.gw.Serving(p)
			if mine || name != n.name && serves(m.Meta, p) {
				ms.Serving++
				servers[p] = name
			}
		}
		st.Members = append(st.Members, ms)
	}
	for p := 0; p < n.parts; p++ {
		a := t.Partitions[p]
		ps := PartitionStatus{Partition: p, Owner: a.Owner, Replicas: a.Replicas, Server: servers[p]}
		if servers[p] == n.name {
			ps.Epoch = n.gw.Epoch(p)
			last := n.store.LastSeq(p)
			for m, r := range n.replicas[p] {
				if ps.ReplicaLag == nil {
					ps.ReplicaLag = map[string]uint64{}
				}
				ps.ReplicaLag[m] = last - min(last, r.acked)
				if r.caughtUp {
					ps.CaughtUp = append(ps.CaughtUp, m)
				}
			}
			sort.Strings(ps.CaughtUp)
		}
		st.Partitions = append(st.Partitions, ps)
	}
	n.mu.Unlock()
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}
