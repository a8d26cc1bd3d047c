package actors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestFileSinkOwnsOnlyWhatItCreated: the record cannot be forged through
// a file output, a file of output rows from before records is taken
// over, and a foreign path.1 stops rotation instead of being replaced.
func TestFileSinkOwnsOnlyWhatItCreated(t *testing.T) {
	dir := t.TempDir()
	roots, err := NewDataRoots([]string{dir}, nil)
	require.NoError(t, err)
	_, err = prepareJob(roots, fileOutJob(filepath.Join(dir, ".victim.jsonl.millstream")))
	require.ErrorContains(t, err, "reserved")

	victim := filepath.Join(dir, "victim.jsonl")
	require.NoError(t, os.WriteFile(victim, []byte("mine\n"), 0o644))
	require.NoError(t, os.WriteFile(ownRecord(victim), []byte(`{"_id":"0000000000000001"}`+"\n"), 0o644))
	_, err = prepareJob(roots, fileOutJob(victim))
	require.ErrorContains(t, err, "not a millstream file output record")

	legacy := filepath.Join(dir, "legacy.jsonl")
	require.NoError(t, os.WriteFile(legacy, []byte(`{"_id":"00000000000000a1","v":1}`+"\n"), 0o644))
	require.NoError(t, checkOwned(legacy))
	s, err := newFileSink(legacy, 0)
	require.NoError(t, err)
	require.NoError(t, s.close())
	_, err = os.Stat(ownRecord(legacy))
	require.NoError(t, err, "taken over and recorded")

	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.ErrorIs(t, checkOwned(empty), errForeignFile, "an empty file could be anybody's")

	path := filepath.Join(dir, "out.jsonl")
	s, err = newFileSink(path, 60)
	require.NoError(t, err)
	require.NoError(t, s.appendLine([]byte(`{"_id":"00000000000000a1","v":1}`+"\n")))
	require.NoError(t, os.WriteFile(path+".1", []byte("foreign\n"), 0o644))
	require.NoError(t, s.appendLine([]byte(`{"_id":"00000000000000a2","v":2}`+"\n")))
	require.NoError(t, s.close())
	b, _ := os.ReadFile(path + ".1")
	require.Equal(t, "foreign\n", string(b))
	b, _ = os.ReadFile(path)
	require.Equal(t, 2, strings.Count(string(b), "\n"), "not rotated: grown past max_bytes")
}

func fileOutJob(path string) *pb.Job {
	return &pb.Job{Name: "j", Outputs: []*pb.JobOutput{{Name: "o", Sink: &pb.JobOutput_File{File: &pb.FileSink{Path: path}}}}}
}
