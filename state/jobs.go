package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// legacyJobKey is where a gateway before the single catalog kept a job
// deployed through its admin API ('j' name -> Job); MigrateJobCatalog
// moves such records into the catalog.
func legacyJobKey(name string) []byte { return append([]byte{'j'}, name...) }

// MigrateJobCatalog moves the jobs of the catalog kept before ('j') into
// the job catalog, as deploys of version 1 by origin, unless the catalog
// has a newer word on the name already (a gateway in a cluster kept both),
// and deletes them. It returns how many it moved.
func (s *Store) MigrateJobCatalog(origin string) (int, error) {
	legacy, err := scanPrefix(s, 'j', "job", func() *pb.Job { return &pb.Job{} })
	if err != nil || len(legacy) == 0 {
		return 0, err
	}
	have, err := s.JobUpdates()
	if err != nil {
		return 0, err
	}
	known := map[string]bool{}
	for _, u := range have {
		known[JobUpdateName(u)] = true
	}
	b := s.db.NewBatch()
	defer b.Close()
	moved := 0
	for _, j := range legacy {
		if !known[j.Name] {
			data, err := proto.Marshal(&pb.JobUpdate{Job: j, Version: 1, Origin: origin})
			if err != nil {
				return 0, fmt.Errorf("state: encode job %q: %w", j.Name, err)
			}
			if err := b.Set(jobUpdateKey(j.Name), data, nil); err != nil {
				return 0, err
			}
			moved++
		}
		if err := b.Delete(legacyJobKey(j.Name), nil); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("state: move the job catalog: %w", err)
	}
	return moved, nil
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

// The job catalog ('J' name -> JobUpdate) is the one record of the jobs
// deployed and removed through an admin API: per job name, the newest
// deploy or removal this gateway has seen, with its version (a counter per
// name) and origin (the gateway it was made on). A standalone gateway
// writes its own (actors.Gateway.Deploy, Remove); in a cluster the node
// writes every gateway's, so that a removal or a newer deploy still
// reaches a gateway that was down when it happened after every gateway
// that saw it has restarted (C12). A configuration file's jobs are read
// from the file at each start, not kept here.

func jobUpdateKey(name string) []byte { return append([]byte{'J'}, name...) }

// JobUpdateName is the job name an update is about.
func JobUpdateName(u *pb.JobUpdate) string {
	if u.Job != nil {
		return u.Job.Name
	}
	return u.Removed
}

// SaveJobUpdate stores the newest update of a job name (synced).
func (s *Store) SaveJobUpdate(u *pb.JobUpdate) error {
	name := JobUpdateName(u)
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

// JobUpdate returns the stored update of one job name.
func (s *Store) JobUpdate(name string) (*pb.JobUpdate, bool, error) {
	data, closer, err := s.db.Get(jobUpdateKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: job update %q: %w", name, err)
	}
	defer closer.Close()
	u := &pb.JobUpdate{}
	if err := proto.Unmarshal(data, u); err != nil {
		return nil, false, fmt.Errorf("%w: job update %q: %w", ErrCorrupt, name, err)
	}
	return u, true, nil
}

// CatalogJobs returns the jobs the catalog has deployed (not removed), by
// name.
func (s *Store) CatalogJobs() ([]*pb.Job, error) {
	us, err := s.JobUpdates()
	if err != nil {
		return nil, err
	}
	var jobs []*pb.Job
	for _, u := range us {
		if u.Job != nil {
			jobs = append(jobs, u.Job)
		}
	}
	return jobs, nil
}
