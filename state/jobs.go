package state

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// The job catalog ('j' name -> Job) keeps jobs deployed through the admin
// API across restarts.

func jobKey(name string) []byte { return append([]byte{'j'}, name...) }

// SaveJob stores a job (synced: a deploy is acknowledged once durable).
func (s *Store) SaveJob(job *pb.Job) error {
	data, err := proto.Marshal(job)
	if err != nil {
		return fmt.Errorf("state: encode job %q: %w", job.Name, err)
	}
	if err := s.db.Set(jobKey(job.Name), data, pebble.Sync); err != nil {
		return fmt.Errorf("state: save job %q: %w", job.Name, err)
	}
	return nil
}

// DeleteJob removes a job from the catalog.
func (s *Store) DeleteJob(name string) error {
	if err := s.db.Delete(jobKey(name), pebble.Sync); err != nil {
		return fmt.Errorf("state: delete job %q: %w", name, err)
	}
	return nil
}

// Jobs returns the catalog, by name.
func (s *Store) Jobs() ([]*pb.Job, error) {
	return scanPrefix(s, 'j', "job", func() *pb.Job { return &pb.Job{} })
}

// scanPrefix decodes every value under a one-byte key prefix, in key order.
func scanPrefix[T proto.Message](s *Store, prefix byte, what string, newT func() T) ([]T, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []T
	for it.First(); it.Valid(); it.Next() {
		m := newT()
		if err := proto.Unmarshal(it.Value(), m); err != nil {
			return nil, fmt.Errorf("%w: %s %q: %w", ErrCorrupt, what, it.Key()[1:], err)
		}
		out = append(out, m)
	}
	return out, it.Error()
}

// The cluster's job updates ('J' name -> JobUpdate) record, per job name,
// the newest deploy or removal this gateway has seen, with its version, so
// that a removal or a newer deploy still reaches a gateway that was down
// when it happened after every gateway that saw it has restarted.

func jobUpdateKey(name string) []byte { return append([]byte{'J'}, name...) }

// SaveJobUpdate stores the newest update of a job name (synced).
func (s *Store) SaveJobUpdate(u *pb.JobUpdate) error {
	name := u.Removed
	if u.Job != nil {
		name = u.Job.Name
	}
	data, err := proto.Marshal(u)
	if err != nil {
		return fmt.Errorf("state: encode job update %q: %w", name, err)
	}
	if err := s.db.Set(jobUpdateKey(name), data, pebble.Sync); err != nil {
		return fmt.Errorf("state: save job update %q: %w", name, err)
	}
	return nil
}

// JobUpdates returns the stored job updates, by name.
func (s *Store) JobUpdates() ([]*pb.JobUpdate, error) {
	return scanPrefix(s, 'J', "job update", func() *pb.JobUpdate { return &pb.JobUpdate{} })
}
