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
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'j'}, UpperBound: []byte{'j' + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var jobs []*pb.Job
	for it.First(); it.Valid(); it.Next() {
		j := &pb.Job{}
		if err := proto.Unmarshal(it.Value(), j); err != nil {
			return nil, fmt.Errorf("%w: job %q: %w", ErrCorrupt, it.Key()[1:], err)
		}
		jobs = append(jobs, j)
	}
	return jobs, it.Error()
}
