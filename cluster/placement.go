package cluster

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
)

// Assignment is one partition's place: its owner, its replicas, and the
// epoch that counts its ownership changes.
type Assignment struct {
	Owner    string
	Replicas []string
	Epoch    uint64
}

// Table is the placement of every partition.
type Table struct {
	Partitions []Assignment
	Members    []string // sorted
}

// score ranks member m for partition p (rendezvous hashing: highest wins).
func score(p int, m string) uint64 {
	h := fnv.New64a()
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(p), byte(p>>8), byte(p>>16), byte(p>>24)
	h.Write(b[:])
	h.Write([]byte(m))
	// FNV's low bits mix poorly for inputs that differ at the end; a final
	// avalanche step (splitmix64's) spreads them.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Place computes the placement of partitions over members with replicas
// copies each (owner included; C1, C2). Epochs are 0: see Next.
func Place(partitions, replicas int, members []string) (Table, error) {
	if partitions <= 0 {
		return Table{}, fmt.Errorf("cluster: %d partitions", partitions)
	}
	if replicas <= 0 {
		return Table{}, fmt.Errorf("cluster: %d replicas: at least 1", replicas)
	}
	ms := slices.Clone(members)
	sort.Strings(ms)
	ms = slices.Compact(ms)
	t := Table{Partitions: make([]Assignment, partitions), Members: ms}
	if len(ms) == 0 {
		return t, nil
	}
	ranked := make([]string, len(ms))
	for p := range t.Partitions {
		copy(ranked, ms)
		sort.Slice(ranked, func(i, j int) bool {
			si, sj := score(p, ranked[i]), score(p, ranked[j])
			if si != sj {
				return si > sj
			}
			return ranked[i] < ranked[j]
		})
		n := min(replicas, len(ranked))
		t.Partitions[p] = Assignment{Owner: ranked[0], Replicas: slices.Clone(ranked[1:n])}
	}
	return t, nil
}

// Next is the table for a new view: the placement of members, with each
// partition's epoch carried over from prev and bumped when its owner or
// replica set changed (C3). prev may be the zero Table.
func Next(prev Table, partitions, replicas int, members []string) (Table, error) {
	t, err := Place(partitions, replicas, members)
	if err != nil {
		return Table{}, err
	}
	for p := range t.Partitions {
		if p >= len(prev.Partitions) {
			t.Partitions[p].Epoch = 1
			continue
		}
		old := prev.Partitions[p]
		t.Partitions[p].Epoch = old.Epoch
		if old.Owner != t.Partitions[p].Owner || !slices.Equal(old.Replicas, t.Partitions[p].Replicas) {
			t.Partitions[p].Epoch++
		}
	}
	return t, nil
}

// Owned lists the partitions member owns.
func (t Table) Owned(member string) []int {
	var out []int
	for p, a := range t.Partitions {
		if a.Owner == member {
			out = append(out, p)
		}
	}
	return out
}

// Replicated lists the partitions member holds a replica of.
func (t Table) Replicated(member string) []int {
	var out []int
	for p, a := range t.Partitions {
		if slices.Contains(a.Replicas, member) {
			out = append(out, p)
		}
	}
	return out
}
